// Search ranking for the course (Sphinx's html_search_scorer). Sphinx's default weights, plus
// one rule: a chapter ranks above the exercise pages on its own topic. Exercise pages repeat
// a chapter's words (and its title), so with the default scores "mask" finds four exercise
// pages before the Masking chapter.
var Scorer = {
  score: (result) => {
    const [docname, title, anchor, descr, score, filename] = result;
    if (docname.startsWith("exercises/")) return score - 8;
    if (docname.startsWith("notebooks/")) return score + 4;
    return score;
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
