// Search ranking for the course (Sphinx's html_search_scorer). Sphinx's default weights, plus
// two rules: a chapter ranks above the exercise pages on its own topic, and above the
// chapters that merely mention it. Exercise pages repeat
// a chapter's words (and its title), so with the default scores "mask" finds four exercise
// pages before the Masking chapter.
var Scorer = {
  score: (result) => {
    const [docname, title, anchor, descr, score, filename] = result;
    if (docname.startsWith("exercises/")) return score - 8;
    if (!docname.startsWith("notebooks/")) return score;
    // Sphinx gives a title match its bonus only when the query is at least half the title,
    // which the chapter number ("7. Masking") can prevent: a chapter whose title has a word
    // starting with the query gets that bonus back.
    const query = (new URLSearchParams(window.location.search).get("q") || "")
      .toLowerCase().trim();
    const words = title.toLowerCase().replace(/^\d+\.\s*/, "").split(/[^a-z0-9]+/);
    const named = query.length > 2 && words.some((w) => w.startsWith(query));
    return score + 4 + (named ? 15 : 0);
  },
  objNameMatch: 11,
  objPartialMatch: 6,
  objPrio: { 0: 15, 1: 5, 2: -5 },
  objPrioDefault: 0,
  title: 15,
  partialTitle: 7,
  term: 5,
  partialTerm: 2,
};
