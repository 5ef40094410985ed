"""A synthetic English->French corpus with gold word alignments (Part I).

The chapters of Part I need a translation task on which (1) a plain GRU encoder-decoder
visibly fails on long sentences, (2) attention visibly fixes it, and (3) we can *measure*
whether what attention looks at is the right source word. Real corpora come without gold
alignments and need downloads; this module generates one instead, from a small grammar with a
real English/French lexicon:

* determiners that agree with the noun (le / la / l' / les, un / une, des, ce / cet / cette /
  ces, mon / ma / mes, ...), contracted with a preceding *de* or *a* (du, des, au, aux);
* adjectives that agree in gender and number (noir / noire / noirs / noires, beau / bel /
  belle / beaux / belles); most follow the noun in French (*the black cat* -> *le chat
  noir*), a few precede it as in English (grand, petit, bon, beau, vieux, ...);
* verbs conjugated by person and number in the present tense, negation *ne ... pas*,
  object pronouns before the verb (*I see her* -> *je la vois*), adverbs after the verb
  (*he often reads* -> *il lit souvent*);
* prepositional phrases (*near the house* -> *près de la maison*), relative clauses with
  *qui* / *que*, and coordination, so that sentences reach 60 tokens and more.

Word order is mostly monotone with local reorderings, so a soft alignment can be learned, and
the translation is a deterministic function of the source sentence. Every pair carries its
**gold word alignment**: links ``(src_index, tgt_index)``, one-to-many (*not* -> *ne*,
*pas*) and many-to-one (*of the* -> *du*, *in front of* -> *devant*) included; every token of
both sentences is linked (the final full stop to the full stop).

Lengths are counted in tokens, the final full stop included (``he sleeps .`` has length 3).
A pair's length is the length of its source sentence; generation targets a length drawn
uniformly from ``[min_len, max_len]`` and grows a sentence to exactly that length.

Usage::

    from attention_lib.data import make_corpus

    corpus = make_corpus(30_000, seed=0, min_len=3, max_len=60)
    pair = corpus.pairs[0]
    pair.src, pair.tgt, pair.alignment     # tuples of tokens; ((src_i, tgt_j), ...)
    len(corpus.src_vocab), len(corpus.tgt_vocab)
    train = corpus.batches("train", batch_size=64, generator=torch.Generator().manual_seed(0))
    for batch in train:   # one epoch; iterate again for the next (reshuffled) epoch
        src, src_len, tgt_in, tgt_out, tgt_len = batch   # unpacks as five tensors
        batch.src       # (B, S) long: source ids + <eos>, padded with <pad> = 0
        batch.src_len   # (B,)  long: lengths including <eos>
        batch.tgt_in    # (B, T) long: <bos> + target ids   (decoder input, teacher forcing)
        batch.tgt_out   # (B, T) long: target ids + <eos>   (what the decoder must predict)
        batch.tgt_len   # (B,)  long: lengths including <eos>
        batch.index     # (B,)  long: positions in corpus.pairs (for alignments, references)

    # scoring what a decoder produced (see attention_lib.metrics)
    from attention_lib.metrics import attention_aer, bleu_by_length
    pairs = [corpus.pairs[i] for i in batch.index.tolist()]
    hyps = [corpus.tgt_vocab.decode(row) for row in decoded_ids]   # stops at <eos>
    bleu_by_length(hyps, [p.tgt for p in pairs], [len(p.src) for p in pairs])
    attention_aer(attn, [p.alignment for p in pairs],              # attn: (B, T, S)
                  src_lens=[len(p.src) for p in pairs], tgt_lens=[len(p.tgt) for p in pairs])

Position ``i`` of ``batch.src[b]`` is source token ``i`` of the pair, and decoder step ``j``
(row ``j`` of the attention weights) predicts target token ``j``; gold links therefore index
attention matrices directly (``Pair.alignment_matrix()`` has the shape ``(len(tgt),
len(src))`` of the attention weights of one sentence, without the <eos> row and column).

Randomness: corpus generation takes an integer ``seed`` (it draws millions of small choices
from Python's ``random.Random``, which is much faster than torch for scalars and stable
across platforms); batch shuffling takes a ``torch.Generator``.

Reference for gold alignments and AER: Och & Ney (2003), "A systematic comparison of various
statistical alignment models", Computational Linguistics 29(1).
"""
from __future__ import annotations

import bisect
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import (Dict, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple,
                    Union)

import torch

Tensor = torch.Tensor
Link = Tuple[int, int]

__all__ = [
    "PAD", "BOS", "EOS", "UNK", "SPECIALS", "Vocab", "Pair", "Batch", "Batches", "Corpus",
    "tokenize", "detokenize", "pad_sequences", "make_batch", "bucket_batches",
    "sample_pair", "make_corpus", "split_indices",
    "Noun", "Adjective", "Verb", "NOUNS", "ADJECTIVES", "VERBS",
]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
#: Special tokens, in id order: <pad> = 0, <bos> = 1, <eos> = 2, <unk> = 3.
SPECIALS = (PAD, BOS, EOS, UNK)


# =========================================================================== lexicon
class Noun(NamedTuple):
    """A noun: English singular/plural, French singular/plural, French gender, category.

    ``cat`` is one of person, animal, food, text, thing, place; ``tags`` adds the category
    and extra selection tags (e.g. ``open`` for things one can open).
    """
    en: str
    en_pl: str
    fr: str
    fr_pl: str
    gender: str  # "m" or "f"
    cat: str
    tags: frozenset


class Adjective(NamedTuple):
    """An adjective: English form, French forms (m sg, f sg, m pl, f pl), position, domain.

    ``pre``: True when it stands before the noun in French (grand, petit, bon, beau, ...).
    ``m_sg_vowel``: the masculine singular before a vowel (bel, vieil, nouvel), if different.
    ``domain``: which nouns it describes: any, animate (people and animals), person,
    thing (food, text, thing, place) or colour (everything but people).
    """
    en: str
    forms: Tuple[str, str, str, str]
    pre: bool
    domain: str
    m_sg_vowel: Optional[str] = None


class Verb(NamedTuple):
    """A verb: English base and 3rd-singular forms, French present tense, valency.

    ``fr``: the forms for (je, il/elle, nous, vous, ils/elles). ``kind``: ``intr``
    (no object), ``tr`` (direct object), ``ditr`` (object + *to* + person) or ``prep``
    (object introduced by a preposition: *speak to* -> *parler à*). ``particle``: an English
    particle that belongs to the verb (*look for* -> *chercher*). ``obj``: the noun
    categories its object may have.
    """
    en: str
    en3: str
    fr: Tuple[str, str, str, str, str]
    kind: str
    obj: Tuple[str, ...] = ()
    particle: Optional[str] = None
    iprep: Optional[str] = None  # English preposition of a "prep" verb ("to", "of")


def _n(en, en_pl, fr, fr_pl, gender, cat, *extra):
    return Noun(en, en_pl, fr, fr_pl, gender, cat, frozenset((cat,) + extra))


#: The nouns. Every French noun starting with h has a mute h (l'homme, l'hotel).
NOUNS: Tuple[Noun, ...] = (
    # people
    _n("man", "men", "homme", "hommes", "m", "person"),
    _n("woman", "women", "femme", "femmes", "f", "person"),
    _n("boy", "boys", "garçon", "garçons", "m", "person"),
    _n("girl", "girls", "fille", "filles", "f", "person"),
    _n("child", "children", "enfant", "enfants", "m", "person"),
    _n("friend", "friends", "ami", "amis", "m", "person"),
    _n("teacher", "teachers", "professeur", "professeurs", "m", "person"),
    _n("student", "students", "étudiant", "étudiants", "m", "person"),
    _n("doctor", "doctors", "médecin", "médecins", "m", "person"),
    _n("neighbour", "neighbours", "voisin", "voisins", "m", "person"),
    _n("sister", "sisters", "sœur", "sœurs", "f", "person"),
    _n("brother", "brothers", "frère", "frères", "m", "person"),
    _n("mother", "mothers", "mère", "mères", "f", "person"),
    _n("father", "fathers", "père", "pères", "m", "person"),
    _n("actress", "actresses", "actrice", "actrices", "f", "person"),
    _n("baker", "bakers", "boulanger", "boulangers", "m", "person"),
    _n("king", "kings", "roi", "rois", "m", "person"),
    _n("queen", "queens", "reine", "reines", "f", "person"),
    # animals
    _n("cat", "cats", "chat", "chats", "m", "animal"),
    _n("dog", "dogs", "chien", "chiens", "m", "animal"),
    _n("bird", "birds", "oiseau", "oiseaux", "m", "animal"),
    _n("horse", "horses", "cheval", "chevaux", "m", "animal"),
    _n("mouse", "mice", "souris", "souris", "f", "animal"),
    _n("cow", "cows", "vache", "vaches", "f", "animal"),
    _n("owl", "owls", "chouette", "chouettes", "f", "animal"),
    _n("rabbit", "rabbits", "lapin", "lapins", "m", "animal"),
    _n("duck", "ducks", "canard", "canards", "m", "animal"),
    _n("frog", "frogs", "grenouille", "grenouilles", "f", "animal"),
    _n("elephant", "elephants", "éléphant", "éléphants", "m", "animal"),
    _n("bear", "bears", "ours", "ours", "m", "animal"),
    # food
    _n("apple", "apples", "pomme", "pommes", "f", "food"),
    _n("bread", "breads", "pain", "pains", "m", "food"),
    _n("cake", "cakes", "gâteau", "gâteaux", "m", "food"),
    _n("cheese", "cheeses", "fromage", "fromages", "m", "food"),
    _n("orange", "oranges", "orange", "oranges", "f", "food"),
    _n("egg", "eggs", "œuf", "œufs", "m", "food"),
    _n("soup", "soups", "soupe", "soupes", "f", "food"),
    _n("banana", "bananas", "banane", "bananes", "f", "food"),
    _n("pear", "pears", "poire", "poires", "f", "food"),
    # things to read and write
    _n("book", "books", "livre", "livres", "m", "text", "open"),
    _n("letter", "letters", "lettre", "lettres", "f", "text", "open"),
    _n("newspaper", "newspapers", "journal", "journaux", "m", "text"),
    _n("story", "stories", "histoire", "histoires", "f", "text"),
    _n("map", "maps", "carte", "cartes", "f", "text"),
    _n("poem", "poems", "poème", "poèmes", "m", "text"),
    # things
    _n("table", "tables", "table", "tables", "f", "thing"),
    _n("door", "doors", "porte", "portes", "f", "thing", "open"),
    _n("window", "windows", "fenêtre", "fenêtres", "f", "thing", "open"),
    _n("car", "cars", "voiture", "voitures", "f", "thing", "open"),
    _n("chair", "chairs", "chaise", "chaises", "f", "thing"),
    _n("box", "boxes", "boîte", "boîtes", "f", "thing", "open"),
    _n("hat", "hats", "chapeau", "chapeaux", "m", "thing"),
    _n("ball", "balls", "balle", "balles", "f", "thing"),
    _n("picture", "pictures", "tableau", "tableaux", "m", "thing"),
    _n("key", "keys", "clé", "clés", "f", "thing"),
    _n("bag", "bags", "sac", "sacs", "m", "thing", "open"),
    _n("glass", "glasses", "verre", "verres", "m", "thing"),
    _n("lamp", "lamps", "lampe", "lampes", "f", "thing"),
    _n("bicycle", "bicycles", "vélo", "vélos", "m", "thing"),
    _n("umbrella", "umbrellas", "parapluie", "parapluies", "m", "thing", "open"),
    _n("flower", "flowers", "fleur", "fleurs", "f", "thing"),
    _n("tree", "trees", "arbre", "arbres", "m", "thing"),
    _n("clock", "clocks", "horloge", "horloges", "f", "thing"),
    # places
    _n("house", "houses", "maison", "maisons", "f", "place", "in"),
    _n("garden", "gardens", "jardin", "jardins", "m", "place", "in"),
    _n("street", "streets", "rue", "rues", "f", "place", "in"),
    _n("school", "schools", "école", "écoles", "f", "place", "in"),
    _n("church", "churches", "église", "églises", "f", "place", "in"),
    _n("city", "cities", "ville", "villes", "f", "place", "in"),
    _n("forest", "forests", "forêt", "forêts", "f", "place", "in"),
    _n("bridge", "bridges", "pont", "ponts", "m", "place"),
    _n("island", "islands", "île", "îles", "f", "place"),
    _n("hotel", "hotels", "hôtel", "hôtels", "m", "place", "in"),
    _n("shop", "shops", "magasin", "magasins", "m", "place", "in"),
    _n("river", "rivers", "rivière", "rivières", "f", "place", "in"),
    _n("park", "parks", "parc", "parcs", "m", "place", "in"),
    _n("kitchen", "kitchens", "cuisine", "cuisines", "f", "place", "in"),
    _n("station", "stations", "gare", "gares", "f", "place"),
    _n("village", "villages", "village", "villages", "m", "place", "in"),
    _n("beach", "beaches", "plage", "plages", "f", "place"),
)


def _a(en, ms, fs, mp, fp, pre, domain, m_sg_vowel=None):
    return Adjective(en, (ms, fs, mp, fp), pre, domain, m_sg_vowel)


#: The adjectives. The ten with ``pre=True`` precede the noun in French too.
ADJECTIVES: Tuple[Adjective, ...] = (
    _a("big", "grand", "grande", "grands", "grandes", True, "any"),
    _a("small", "petit", "petite", "petits", "petites", True, "any"),
    _a("good", "bon", "bonne", "bons", "bonnes", True, "any"),
    _a("beautiful", "beau", "belle", "beaux", "belles", True, "any", "bel"),
    _a("young", "jeune", "jeune", "jeunes", "jeunes", True, "animate"),
    _a("old", "vieux", "vieille", "vieux", "vieilles", True, "any", "vieil"),
    _a("new", "nouveau", "nouvelle", "nouveaux", "nouvelles", True, "any", "nouvel"),
    _a("pretty", "joli", "jolie", "jolis", "jolies", True, "any"),
    _a("bad", "mauvais", "mauvaise", "mauvais", "mauvaises", True, "any"),
    _a("large", "gros", "grosse", "gros", "grosses", True, "any"),
    _a("black", "noir", "noire", "noirs", "noires", False, "colour"),
    _a("white", "blanc", "blanche", "blancs", "blanches", False, "colour"),
    _a("red", "rouge", "rouge", "rouges", "rouges", False, "colour"),
    _a("green", "vert", "verte", "verts", "vertes", False, "colour"),
    _a("blue", "bleu", "bleue", "bleus", "bleues", False, "colour"),
    _a("yellow", "jaune", "jaune", "jaunes", "jaunes", False, "colour"),
    _a("happy", "heureux", "heureuse", "heureux", "heureuses", False, "animate"),
    _a("sad", "triste", "triste", "tristes", "tristes", False, "animate"),
    _a("tired", "fatigué", "fatiguée", "fatigués", "fatiguées", False, "animate"),
    _a("clever", "intelligent", "intelligente", "intelligents", "intelligentes", False,
       "animate"),
    _a("lazy", "paresseux", "paresseuse", "paresseux", "paresseuses", False, "animate"),
    _a("curious", "curieux", "curieuse", "curieux", "curieuses", False, "animate"),
    _a("polite", "poli", "polie", "polis", "polies", False, "person"),
    _a("heavy", "lourd", "lourde", "lourds", "lourdes", False, "thing"),
    _a("round", "rond", "ronde", "ronds", "rondes", False, "thing"),
    _a("strange", "étrange", "étrange", "étranges", "étranges", False, "any"),
    _a("famous", "célèbre", "célèbre", "célèbres", "célèbres", False, "any"),
    _a("empty", "vide", "vide", "vides", "vides", False, "thing"),
)

_ANY = ("person", "animal", "food", "text", "thing", "place")
_ANIMATE = ("person", "animal")
_OBJECTS = ("food", "text", "thing")

#: The verbs, present tense (je, il/elle, nous, vous, ils/elles).
VERBS: Tuple[Verb, ...] = (
    Verb("sleep", "sleeps", ("dors", "dort", "dormons", "dormez", "dorment"), "intr"),
    Verb("run", "runs", ("cours", "court", "courons", "courez", "courent"), "intr"),
    Verb("sing", "sings", ("chante", "chante", "chantons", "chantez", "chantent"), "intr"),
    Verb("dance", "dances", ("danse", "danse", "dansons", "dansez", "dansent"), "intr"),
    Verb("work", "works", ("travaille", "travaille", "travaillons", "travaillez",
                           "travaillent"), "intr"),
    Verb("laugh", "laughs", ("ris", "rit", "rions", "riez", "rient"), "intr"),
    Verb("swim", "swims", ("nage", "nage", "nageons", "nagez", "nagent"), "intr"),
    Verb("cry", "cries", ("pleure", "pleure", "pleurons", "pleurez", "pleurent"), "intr"),
    Verb("play", "plays", ("joue", "joue", "jouons", "jouez", "jouent"), "intr"),
    Verb("wait", "waits", ("attends", "attend", "attendons", "attendez", "attendent"), "intr"),
    Verb("walk", "walks", ("marche", "marche", "marchons", "marchez", "marchent"), "intr"),
    Verb("arrive", "arrives", ("arrive", "arrive", "arrivons", "arrivez", "arrivent"), "intr"),
    Verb("see", "sees", ("vois", "voit", "voyons", "voyez", "voient"), "tr", _ANY),
    Verb("watch", "watches", ("regarde", "regarde", "regardons", "regardez", "regardent"),
         "tr", _ANY),
    Verb("like", "likes", ("aime", "aime", "aimons", "aimez", "aiment"), "tr", _ANY),
    Verb("find", "finds", ("trouve", "trouve", "trouvons", "trouvez", "trouvent"), "tr", _ANY),
    Verb("want", "wants", ("veux", "veut", "voulons", "voulez", "veulent"), "tr", _OBJECTS),
    Verb("take", "takes", ("prends", "prend", "prenons", "prenez", "prennent"), "tr",
         _OBJECTS),
    Verb("eat", "eats", ("mange", "mange", "mangeons", "mangez", "mangent"), "tr", ("food",)),
    Verb("read", "reads", ("lis", "lit", "lisons", "lisez", "lisent"), "tr", ("text",)),
    Verb("write", "writes", ("écris", "écrit", "écrivons", "écrivez", "écrivent"), "tr",
         ("text",)),
    Verb("open", "opens", ("ouvre", "ouvre", "ouvrons", "ouvrez", "ouvrent"), "tr", ("open",)),
    Verb("buy", "buys", ("achète", "achète", "achetons", "achetez", "achètent"), "tr",
         _OBJECTS),
    Verb("draw", "draws", ("dessine", "dessine", "dessinons", "dessinez", "dessinent"), "tr",
         _ANY),
    Verb("look", "looks", ("cherche", "cherche", "cherchons", "cherchez", "cherchent"), "tr",
         _ANY, particle="for"),
    Verb("listen", "listens", ("écoute", "écoute", "écoutons", "écoutez", "écoutent"), "tr",
         _ANIMATE, particle="to"),
    Verb("call", "calls", ("appelle", "appelle", "appelons", "appelez", "appellent"), "tr",
         _ANIMATE),
    Verb("help", "helps", ("aide", "aide", "aidons", "aidez", "aident"), "tr", _ANIMATE),
    Verb("know", "knows", ("connais", "connaît", "connaissons", "connaissez", "connaissent"),
         "tr", ("person", "animal", "place")),
    Verb("visit", "visits", ("visite", "visite", "visitons", "visitez", "visitent"), "tr",
         ("place",)),
    Verb("give", "gives", ("donne", "donne", "donnons", "donnez", "donnent"), "ditr",
         _OBJECTS),
    Verb("show", "shows", ("montre", "montre", "montrons", "montrez", "montrent"), "ditr",
         _OBJECTS),
    Verb("send", "sends", ("envoie", "envoie", "envoyons", "envoyez", "envoient"), "ditr",
         ("text",)),
    Verb("speak", "speaks", ("parle", "parle", "parlons", "parlez", "parlent"), "prep",
         _ANIMATE, iprep="to"),
    Verb("reply", "replies", ("réponds", "répond", "répondons", "répondez", "répondent"),
         "prep", ("person",), iprep="to"),
    Verb("think", "thinks", ("pense", "pense", "pensons", "pensez", "pensent"), "prep",
         _ANY, iprep="of"),
)

#: "be": English (I, he/she/it, plural) and French forms (je, il, nous, vous, ils).
_BE_EN = ("am", "is", "are", "are", "are")
_BE_FR = ("suis", "est", "sommes", "êtes", "sont")


class _Pron(NamedTuple):
    en: str
    fr: str
    person: int        # index into the French forms: 0 je, 1 il, 2 nous, 3 vous, 4 ils
    gender: Optional[str]
    plural: bool


_SUBJ_PRONOUNS = (
    _Pron("i", "je", 0, None, False), _Pron("you", "vous", 3, None, True),
    _Pron("he", "il", 1, "m", False), _Pron("she", "elle", 1, "f", False),
    _Pron("we", "nous", 2, None, True), _Pron("they", "ils", 4, "m", True),
)


class _ObjPron(NamedTuple):
    en: str
    fr: str  # before the verb: je *la* vois


_OBJ_PRONOUNS = (_ObjPron("him", "le"), _ObjPron("her", "la"), _ObjPron("them", "les"))


class _Prep(NamedTuple):
    en: Tuple[str, ...]
    fr: Tuple[str, ...]
    links: Tuple[Link, ...]   # (en_i, fr_j) inside the preposition
    contracts: bool           # last French word is de / à and merges with le / les
    obj: Tuple[str, ...]      # noun categories / tags of its object


_P = _Prep
_PREP_OF = _P(("of",), ("de",), ((0, 0),), True, _ANY)
_PREP_TO = _P(("to",), ("à",), ((0, 0),), True, ("person",))
_PREP_TO_ANY = _P(("to",), ("à",), ((0, 0),), True, _ANY)
_PREP_OF_A = _P(("of",), ("à",), ((0, 0),), True, _ANY)  # think of -> penser à
#: prepositions that attach to a noun phrase ("the book on the table")
_NP_PREPS = (
    _P(("on",), ("sur",), ((0, 0),), False, _ANY),
    _P(("under",), ("sous",), ((0, 0),), False, _ANY),
    _P(("near",), ("près", "de"), ((0, 0), (0, 1)), True, _ANY),
    _P(("behind",), ("derrière",), ((0, 0),), False, _ANY),
    _P(("in", "front", "of"), ("devant",), ((0, 0), (1, 0), (2, 0)), False, _ANY),
    _P(("next", "to"), ("à", "côté", "de"), ((0, 0), (0, 1), (1, 2)), True, _ANY),
    _P(("with",), ("avec",), ((0, 0),), False, _ANY),
    _P(("without",), ("sans",), ((0, 0),), False, _ANY),
    _P(("for",), ("pour",), ((0, 0),), False, _ANIMATE),
    _PREP_OF, _PREP_OF,
)
#: prepositions of place that attach to a clause ("the cat sleeps in the garden")
_LOC_PREPS = (
    _P(("in",), ("dans",), ((0, 0),), False, ("in",)),
    _P(("at",), ("à",), ((0, 0),), True, ("place",)),
    _P(("on",), ("sur",), ((0, 0),), False, ("thing", "place")),
    _P(("under",), ("sous",), ((0, 0),), False, ("thing",)),
    _P(("near",), ("près", "de"), ((0, 0), (0, 1)), True, _ANY),
    _P(("behind",), ("derrière",), ((0, 0),), False, _ANY),
    _P(("in", "front", "of"), ("devant",), ((0, 0), (1, 0), (2, 0)), False, _ANY),
    _P(("next", "to"), ("à", "côté", "de"), ((0, 0), (0, 1), (1, 2)), True, _ANY),
    _P(("with",), ("avec",), ((0, 0),), False, _ANIMATE),
)
#: time phrases at the end of a clause: English, French, links
_TIMES = (
    (("every", "day"), ("chaque", "jour"), ((0, 0), (1, 1))),
    (("every", "morning"), ("chaque", "matin"), ((0, 0), (1, 1))),
    (("every", "evening"), ("chaque", "soir"), ((0, 0), (1, 1))),
    (("every", "week"), ("chaque", "semaine"), ((0, 0), (1, 1))),
    (("in", "the", "morning"), ("le", "matin"), ((0, 0), (1, 0), (2, 1))),
    (("in", "the", "evening"), ("le", "soir"), ((0, 0), (1, 0), (2, 1))),
    (("at", "night"), ("la", "nuit"), ((0, 0), (1, 1))),
    (("on", "sunday"), ("le", "dimanche"), ((0, 0), (1, 1))),
)
_ADVERBS = (("often", "souvent"), ("always", "toujours"), ("sometimes", "parfois"))
_CONJS = (("and", "et"), ("and", "et"), ("but", "mais"))
# determiner name -> English singular / plural form (None: not allowed in that number)
_DET_EN = {"the": ("the", "the"), "a": ("a", None), "some": (None, "some"),
           "this": ("this", "these"), "my": ("my", "my"), "our": ("our", "our"),
           "your": ("your", "your")}
_DETS_SG = (("the", 9), ("a", 4), ("this", 2), ("my", 1), ("our", 1), ("your", 1))
_DETS_PL = (("the", 9), ("some", 3), ("this", 2), ("my", 1), ("our", 1), ("your", 1))

_FR_VOWELS = frozenset("aeiouyhàâäéèêëîïôöùûüœ")
_EN_VOWELS = frozenset("aeiou")


def _fr_vowel(word: str) -> bool:
    return word[0] in _FR_VOWELS


def _fits(domain: str, cat: str) -> bool:
    if domain == "any":
        return True
    if domain == "animate":
        return cat in _ANIMATE
    if domain == "person":
        return cat == "person"
    if domain == "thing":
        return cat not in _ANIMATE
    return cat != "person"  # colour


_PRE_BY_CAT = {c: tuple(a for a in ADJECTIVES if a.pre and _fits(a.domain, c)) for c in _ANY}
_POST_BY_CAT = {c: tuple(a for a in ADJECTIVES if not a.pre and _fits(a.domain, c))
                for c in _ANY}
_ADJ_BY_CAT = {c: _PRE_BY_CAT[c] + _POST_BY_CAT[c] for c in _ANY}
_NOUN_CACHE: Dict[Tuple[str, ...], Tuple[Noun, ...]] = {}


def _nouns_with(tags: Tuple[str, ...]) -> Tuple[Noun, ...]:
    got = _NOUN_CACHE.get(tags)
    if got is None:
        got = _NOUN_CACHE[tags] = tuple(n for n in NOUNS if n.tags & set(tags))
    return got


def _adj_form(adj: Adjective, gender: str, plural: bool, next_vowel: bool) -> str:
    if not plural and gender == "m" and next_vowel and adj.m_sg_vowel:
        return adj.m_sg_vowel
    return adj.forms[(2 if plural else 0) + (gender == "f")]


def _det_fr(det: str, gender: str, plural: bool, next_vowel: bool, pre_adj: bool) -> str:
    """French determiner for a noun phrase, given what follows it."""
    if det == "the":
        return "les" if plural else ("l'" if next_vowel else ("le" if gender == "m" else "la"))
    if det == "a":
        return "un" if gender == "m" else "une"
    if det == "some":  # plural indefinite; "de" before an adjective (de grands arbres)
        return ("d'" if next_vowel else "de") if pre_adj else "des"
    if det == "this":
        return "ces" if plural else ("cette" if gender == "f" else ("cet" if next_vowel else "ce"))
    if det == "my":
        return "mes" if plural else ("mon" if gender == "m" or next_vowel else "ma")
    if det == "our":
        return "nos" if plural else "notre"
    return "vos" if plural else "votre"  # your


_CONTRACT = {("de", "le"): "du", ("de", "les"): "des", ("à", "le"): "au", ("à", "les"): "aux"}


class _Table:
    """Items with weights, for fast weighted draws."""
    __slots__ = ("items", "cum", "total")

    def __init__(self, pairs):
        self.items = tuple(x for x, _ in pairs)
        self.cum, acc = [], 0.0
        for _, w in pairs:
            acc += w
            self.cum.append(acc)
        self.total = acc


_DETS_SG_T, _DETS_PL_T = _Table(_DETS_SG), _Table(_DETS_PL)


# =========================================================================== tree
class _NP:
    __slots__ = ("noun", "plural", "det", "pre", "post", "pp", "rel", "depth", "in_rel")

    def __init__(self, noun, plural, det, depth, in_rel):
        self.noun, self.plural, self.det = noun, plural, det
        self.pre = self.post = self.pp = self.rel = None
        self.depth, self.in_rel = depth, in_rel


class _Coord:
    __slots__ = ("items",)

    def __init__(self, items):
        self.items = items


class _Clause:
    __slots__ = ("subj", "verb", "obj", "iobj", "adj", "neg", "adv", "locs", "time", "rel")

    def __init__(self, subj, verb, obj=None, iobj=None, adj=None, rel=None):
        self.subj, self.verb, self.obj, self.iobj, self.adj = subj, verb, obj, iobj, adj
        self.neg, self.adv, self.time, self.rel = False, None, None, rel
        self.locs = []


class _Sentence:
    __slots__ = ("clauses", "conjs", "nps", "all_clauses", "length")

    def __init__(self):
        self.clauses, self.conjs, self.nps, self.all_clauses = [], [], [], []
        self.length = 1  # the full stop


def _en_len_np(np) -> int:
    if isinstance(np, (_Pron, _ObjPron)):
        return 1
    if isinstance(np, _Coord):
        return sum(_en_len_np(x) for x in np.items) + len(np.items) - 1
    n = 2 + (np.pre is not None) + (np.post is not None)
    if np.pp is not None:
        n += len(np.pp[0].en) + _en_len_np(np.pp[1])
    if np.rel is not None:
        n += _en_len_clause(np.rel)
    return n


def _en_len_clause(c: _Clause) -> int:
    n = 1 if c.rel else 0  # "that"
    if c.subj is not None:
        n += _en_len_np(c.subj)
    n += 1  # verb or "be"
    if c.verb is None:
        n += 1 + c.neg  # adjective, "not"
    else:
        n += 2 * c.neg + (c.verb.particle is not None)
        if c.obj is not None:
            n += _en_len_np(c.obj)
        if c.iobj is not None:
            n += 1 + _en_len_np(c.iobj)
    n += c.adv is not None
    for prep, np in c.locs:
        n += len(prep.en) + _en_len_np(np)
    if c.time is not None:
        n += len(c.time[0])
    return n


# =========================================================================== sampling
def _weighted(rng: random.Random, table: _Table):
    return table.items[bisect.bisect_right(table.cum, rng.random() * table.total)]


def _new_np(rng, sent, tags, depth, in_rel, no_some=False) -> _NP:
    noun = rng.choice(_nouns_with(tags))
    plural = rng.random() < 0.35
    det = _weighted(rng, _DETS_PL_T if plural else _DETS_SG_T)
    if no_some and det == "some":
        det = "the"
    np = _NP(noun, plural, det, depth, in_rel)
    sent.nps.append(np)
    return np


def _new_subject(rng, sent, in_rel, copula=False):
    """A subject: a pronoun (30%) or a new noun phrase. Copula subjects have a known gender."""
    if rng.random() < 0.3:
        pool = _SUBJ_PRONOUNS[2:4] + _SUBJ_PRONOUNS[5:] if copula else _SUBJ_PRONOUNS
        return rng.choice(pool)
    return _new_np(rng, sent, _ANY if copula else _ANIMATE, 0, in_rel)


def _new_clause(rng, sent, in_rel, budget) -> Optional[_Clause]:
    """A basic clause (subject, verb, objects) of at most ``budget`` English tokens."""
    for _ in range(6):
        r = rng.random()
        if r < 0.15:  # copula: "the cat is black"
            subj = _new_subject(rng, sent, in_rel, copula=True)
            cat = subj.noun.cat if isinstance(subj, _NP) else "person"
            c = _Clause(subj, None, adj=rng.choice(_ADJ_BY_CAT[cat]))
        else:
            verb = rng.choice(VERBS)
            c = _Clause(_new_subject(rng, sent, in_rel), verb)
            if verb.kind in ("tr", "ditr"):
                if (verb.kind == "tr" and rng.random() < 0.15
                        and ("person" in verb.obj or "animal" in verb.obj)):
                    c.obj = rng.choice(_OBJ_PRONOUNS)
                else:
                    c.obj = _new_np(rng, sent, verb.obj, 0, in_rel)
            if verb.kind == "ditr":
                c.iobj = _new_np(rng, sent, ("person",), 0, in_rel)
            elif verb.kind == "prep":
                c.iobj = _new_np(rng, sent, verb.obj, 0, in_rel, no_some=verb.iprep == "of")
        if _en_len_clause(c) <= budget:
            return c
        _forget(sent, c)
    if budget < 2:
        return None
    c = _Clause(rng.choice(_SUBJ_PRONOUNS), rng.choice(VERBS[:12]))  # "he sleeps"
    return c


def _forget(sent, node) -> None:
    """Drop the noun phrases of a rejected clause from the registry."""
    gone = set()

    def walk(x):
        if isinstance(x, _NP):
            gone.add(id(x))
            if x.pp is not None:
                walk(x.pp[1])
            if x.rel is not None:
                walk(x.rel)
        elif isinstance(x, _Coord):
            for y in x.items:
                walk(y)
        elif isinstance(x, _Clause):
            for y in (x.subj, x.obj, x.iobj):
                walk(y)
            for _, y in x.locs:
                walk(y)
    walk(node)
    if gone:
        sent.nps[:] = [np for np in sent.nps if id(np) not in gone]


# --- expansions: each returns the number of English tokens it added (0: not possible)
def _x_pre(rng, sent, room):
    cands = [np for np in sent.nps if np.pre is None and _PRE_BY_CAT[np.noun.cat]]
    if not cands or room < 1:
        return 0
    np = rng.choice(cands)
    np.pre = rng.choice(_PRE_BY_CAT[np.noun.cat])
    return 1


def _x_post(rng, sent, room):
    cands = [np for np in sent.nps if np.post is None and _POST_BY_CAT[np.noun.cat]]
    if not cands or room < 1:
        return 0
    np = rng.choice(cands)
    np.post = rng.choice(_POST_BY_CAT[np.noun.cat])
    return 1


def _x_pp(rng, sent, room):
    if room < 3:
        return 0
    cands = [np for np in sent.nps if np.pp is None and np.rel is None and np.depth < 2]
    if not cands:
        return 0
    np = rng.choice(cands)
    prep = rng.choice(_NP_PREPS)
    if len(prep.en) + 2 > room:
        prep = _NP_PREPS[0]
    inner = _new_np(rng, sent, prep.obj, np.depth + 1, np.in_rel, no_some=prep.contracts)
    np.pp = (prep, inner)
    return len(prep.en) + 2


def _x_rel(rng, sent, room):
    if room < 2:
        return 0
    cands = [np for np in sent.nps if np.rel is None and np.pp is None and not np.in_rel]
    if not cands:
        return 0
    np = rng.choice(cands)
    cat = np.noun.cat
    for _ in range(4):
        r = rng.random()
        if r < 0.5 and cat in _ANIMATE:  # subject relative: "that sleeps", "that sees X"
            verb = rng.choice(VERBS)
            c = _Clause(None, verb, rel="subj")
            if verb.kind in ("tr", "ditr"):
                c.obj = _new_np(rng, sent, verb.obj, np.depth, True)
            if verb.kind == "ditr":
                c.iobj = _new_np(rng, sent, ("person",), np.depth, True)
            elif verb.kind == "prep":
                c.iobj = _new_np(rng, sent, verb.obj, np.depth, True,
                                 no_some=verb.iprep == "of")
        elif r < 0.65:  # "that is black"
            c = _Clause(None, None, adj=rng.choice(_ADJ_BY_CAT[cat]), rel="subj")
        else:  # object relative: "that the boy reads"
            verbs = [v for v in VERBS if v.kind in ("tr", "ditr") and np.noun.tags & set(v.obj)]
            if not verbs:
                continue
            verb = rng.choice(verbs)
            subj = (rng.choice(_SUBJ_PRONOUNS) if rng.random() < 0.4
                    else _new_np(rng, sent, _ANIMATE, np.depth, True))
            c = _Clause(subj, verb, rel="obj")
            if verb.kind == "ditr":
                c.iobj = _new_np(rng, sent, ("person",), np.depth, True)
        n = _en_len_clause(c)
        if n <= room:
            np.rel = c
            sent.all_clauses.append(c)
            return n
        _forget(sent, c)
    return 0


def _x_adv(rng, sent, room):
    cands = [c for c in sent.all_clauses if c.adv is None and not c.neg]
    if not cands or room < 1:
        return 0
    rng.choice(cands).adv = rng.choice(_ADVERBS)
    return 1


def _indefinite_object(c: _Clause) -> bool:
    """French turns un/une/des into *de* after a negation (il ne mange pas de pommes); we
    keep negated clauses away from indefinite objects instead."""
    objs = c.obj.items if isinstance(c.obj, _Coord) else [c.obj]
    return any(isinstance(o, _NP) and o.det in ("a", "some") for o in objs)


def _x_neg(rng, sent, room):
    cands = [c for c in sent.all_clauses if not c.neg and c.adv is None
             and room >= (1 if c.verb is None else 2) and not _indefinite_object(c)]
    if not cands:
        return 0
    c = rng.choice(cands)
    c.neg = True
    return 1 if c.verb is None else 2


def _x_loc(rng, sent, room):
    cands = [c for c in sent.all_clauses if len(c.locs) < 2]
    if not cands or room < 3:
        return 0
    c = rng.choice(cands)
    prep = rng.choice(_LOC_PREPS)
    if len(prep.en) + 2 > room:
        prep = _LOC_PREPS[0]
    depth = 0 if c.rel is None else 1
    c.locs.append((prep, _new_np(rng, sent, prep.obj, depth, c.rel is not None,
                                 no_some=prep.contracts)))
    return len(prep.en) + 2


def _x_time(rng, sent, room):
    cands = [c for c in sent.clauses if c.time is None]
    if not cands:
        return 0
    t = rng.choice(_TIMES)
    if len(t[0]) > room:
        t = _TIMES[0]
        if len(t[0]) > room:
            return 0
    rng.choice(cands).time = t
    return len(t[0])


def _x_clause(rng, sent, room):
    if room < 3 or len(sent.clauses) >= 6:
        return 0
    c = _new_clause(rng, sent, False, room - 1)
    if c is None:
        return 0
    sent.clauses.append(c)
    sent.all_clauses.append(c)
    sent.conjs.append(rng.choice(_CONJS))
    return 1 + _en_len_clause(c)


def _x_coord(rng, sent, room):
    if room < 3:
        return 0
    cands = []
    for c in sent.clauses:
        if isinstance(c.subj, _NP) and c.verb is not None:
            cands.append((c, "subj"))
        if isinstance(c.obj, _NP):
            cands.append((c, "obj"))
    if not cands:
        return 0
    c, slot = rng.choice(cands)
    old = getattr(c, slot)
    tags = _ANIMATE if slot == "subj" else c.verb.obj
    new = _new_np(rng, sent, tags, 0, False)
    if c.neg and slot == "obj" and new.det in ("a", "some"):
        new.det = "the"
    setattr(c, slot, _Coord([old, new]))
    return 3


_EXPANSIONS = _Table(((_x_pre, 2.0), (_x_post, 3.0), (_x_pp, 2.0), (_x_rel, 2.0),
                      (_x_adv, 1.0), (_x_neg, 0.7), (_x_loc, 1.5), (_x_time, 0.7),
                      (_x_clause, 1.5), (_x_coord, 0.7)))


def _grow(rng: random.Random, target: int) -> _Sentence:
    """A sentence tree whose English side has ``target`` tokens (or slightly fewer)."""
    sent = _Sentence()
    c = _new_clause(rng, sent, False, target - 1)
    sent.clauses.append(c)
    sent.all_clauses.append(c)
    sent.length += _en_len_clause(c)
    misses = 0
    while sent.length < target and misses < 12:
        grow = _weighted(rng, _EXPANSIONS)(rng, sent, target - sent.length)
        if grow:
            sent.length += grow
            misses = 0
        else:
            misses += 1
    return sent


# =========================================================================== rendering
class _Out:
    """Two token lists being written side by side, their links, and, for every French
    token, the index of the French token it agrees with (-1: none)."""
    __slots__ = ("en", "fr", "links", "ctrl")

    def __init__(self):
        self.en, self.fr, self.links, self.ctrl = [], [], [], []

    def e(self, w: str) -> int:
        self.en.append(w)
        return len(self.en) - 1

    def f(self, w: str, ctrl: int = -1) -> int:
        self.fr.append(w)
        self.ctrl.append(ctrl)
        return len(self.fr) - 1


def _np_fr_words(np: _NP):
    """French (determiner, pre-adjective, noun, post-adjective) of a noun phrase."""
    n = np.noun
    noun = n.fr_pl if np.plural else n.fr
    pre = None
    if np.pre is not None:
        pre = _adj_form(np.pre, n.gender, np.plural, _fr_vowel(noun))
    nxt = pre if pre is not None else noun
    det = _det_fr(np.det, n.gender, np.plural, _fr_vowel(nxt), pre is not None)
    post = _adj_form(np.post, n.gender, np.plural, False) if np.post is not None else None
    return det, pre, noun, post


def _fr_first(subj) -> str:
    if isinstance(subj, _Pron):
        return subj.fr
    if isinstance(subj, _Coord):
        return _fr_first(subj.items[0])
    return _np_fr_words(subj)[0]


def _feats(subj):
    """(person index, gender, plural) of a subject."""
    if isinstance(subj, _Pron):
        return subj.person, subj.gender, subj.plural
    if isinstance(subj, _Coord):
        g = "m" if any(x.noun.gender == "m" for x in subj.items) else "f"
        return 4, g, True
    return (4 if subj.plural else 1), subj.noun.gender, subj.plural


def _r_np(out: _Out, np, prep: Optional[_Prep] = None) -> int:
    """Write a noun phrase (after an optional preposition); return its head's French index."""
    if isinstance(np, _Coord):
        head = _r_np(out, np.items[0], prep)
        for x in np.items[1:]:
            i, head = out.e("and"), out.f("et")
            out.links.append((i, head))
            _r_np(out, x)
        return head
    det, pre, noun, post = _np_fr_words(np)
    n = np.noun
    en_ids = [out.e(w) for w in prep.en] if prep is not None else []
    # English: det [pre] [post] noun
    en_noun = n.en_pl if np.plural else n.en
    det_en = _DET_EN[np.det][np.plural]
    if det_en == "a":
        nxt = np.pre.en if np.pre else (np.post.en if np.post else en_noun)
        det_en = "an" if nxt[0] in _EN_VOWELS else "a"
    e_det = out.e(det_en)
    e_pre = out.e(np.pre.en) if pre is not None else -1
    e_post = out.e(np.post.en) if post is not None else -1
    e_noun = out.e(en_noun)
    # French: [prep] det [pre] noun [post]
    fr_ids = []
    if prep is not None:
        for k, w in enumerate(prep.fr):
            fr_ids.append(out.f(w))
        if prep.contracts:
            last = fr_ids[-1]
            merged = _CONTRACT.get((prep.fr[-1], det))
            if merged is not None:
                out.fr[last] = merged
                det_i = last
            else:
                if prep.fr[-1] == "de" and _fr_vowel(det):
                    out.fr[last] = "d'"
                det_i = out.f(det)
        else:
            det_i = out.f(det)
        for a, b in prep.links:
            out.links.append((en_ids[a], fr_ids[b]))
    else:
        det_i = out.f(det)
    f_pre = out.f(pre) if pre is not None else -1
    f_noun = out.f(noun)
    f_post = out.f(post, f_noun) if post is not None else -1
    out.ctrl[det_i] = f_noun
    out.links.append((e_det, det_i))
    if pre is not None:
        out.ctrl[f_pre] = f_noun
        out.links.append((e_pre, f_pre))
    if post is not None:
        out.links.append((e_post, f_post))
    out.links.append((e_noun, f_noun))
    if np.pp is not None:
        _r_np(out, np.pp[1], np.pp[0])
    if np.rel is not None:
        _r_clause(out, np.rel, (f_noun, np))
    return f_noun


def _r_clause(out: _Out, c: _Clause, ante=None) -> None:
    """Write a clause. ``ante``: (French index, noun phrase) of a relative's antecedent."""
    person, gender, plural = _feats(ante[1] if c.rel == "subj" else c.subj)
    copula = c.verb is None
    v_fr = _BE_FR[person] if copula else c.verb.fr[person]
    clitic = None
    if isinstance(c.obj, _ObjPron):
        clitic = c.obj.fr
        if clitic != "les" and _fr_vowel(v_fr):
            clitic = "l'"
    after_subj = ("n'" if _fr_vowel(clitic or v_fr) else "ne") if c.neg else (clitic or v_fr)
    # subject
    if c.rel == "subj":
        i, j = out.e("that"), out.f("qui")
        out.links.append((i, j))
        head = ante[0]
    else:
        if c.rel == "obj":
            i = out.e("that")
            j = out.f("qu'" if _fr_vowel(_fr_first(c.subj)) else "que")
            out.links.append((i, j))
        if isinstance(c.subj, _Pron):
            i = out.e(c.subj.en)
            head = out.f("j'" if c.subj.fr == "je" and _fr_vowel(after_subj) else c.subj.fr)
            out.links.append((i, head))
        else:
            head = _r_np(out, c.subj)
    # verb group. English: [adv] [do not] verb [particle] / be [not] [adv]
    third = person == 1
    if copula:
        e_v = out.e(_BE_EN[person])
        e_not = out.e("not") if c.neg else -1
        e_adv = out.e(c.adv[0]) if c.adv else -1
    else:
        e_adv = out.e(c.adv[0]) if c.adv else -1
        if c.neg:
            e_aux, e_not = out.e("does" if third else "do"), out.e("not")
            e_v = out.e(c.verb.en)
        else:
            e_v = out.e(c.verb.en3 if third else c.verb.en)
        e_part = out.e(c.verb.particle) if c.verb.particle else -1
    e_cl = out.e(c.obj.en) if clitic else -1
    # French: [ne] [clitic] verb [pas] [adv]
    f_ne = out.f(after_subj) if c.neg else -1
    f_cl = out.f(clitic) if clitic else -1
    f_v = out.f(v_fr, head)
    f_pas = out.f("pas") if c.neg else -1
    f_adv = out.f(c.adv[1]) if c.adv else -1
    L = out.links
    L.append((e_v, f_v))
    if c.neg:
        L.append((e_not, f_ne))
        L.append((e_not, f_pas))
        if not copula:
            L.append((e_aux, f_v))
    if c.adv:
        L.append((e_adv, f_adv))
    if clitic:
        L.append((e_cl, f_cl))
    if copula:
        i = out.e(c.adj.en)
        j = out.f(_adj_form(c.adj, gender or "m", plural, False), head)
        L.append((i, j))
    else:
        if e_part >= 0:
            L.append((e_part, f_v))
        if isinstance(c.obj, (_NP, _Coord)):
            _r_np(out, c.obj)
        if c.iobj is not None:
            if c.verb.kind == "ditr":
                prep = _PREP_TO
            else:
                prep = _PREP_OF_A if c.verb.iprep == "of" else _PREP_TO_ANY
            _r_np(out, c.iobj, prep)
    for prep, np in c.locs:
        _r_np(out, np, prep)
    if c.time is not None:
        en_t, fr_t, links = c.time
        ei = [out.e(w) for w in en_t]
        fi = [out.f(w) for w in fr_t]
        L.extend((ei[a], fi[b]) for a, b in links)


def _render(sent: _Sentence) -> _Out:
    out = _Out()
    for k, c in enumerate(sent.clauses):
        if k:
            en, fr = sent.conjs[k - 1]
            out.links.append((out.e(en), out.f(fr)))
        _r_clause(out, c)
    out.links.append((out.e("."), out.f(".")))
    return out


# =========================================================================== pairs
@dataclass(frozen=True)
class Pair:
    """One sentence pair with its gold word alignment.

    src, tgt: tuples of tokens (lowercase; the final full stop is a token).
    alignment: sorted tuple of links ``(src_index, tgt_index)``; every token of both
    sentences takes part in at least one link. A token may link to several (*not* ->
    *ne*, *pas*; *of*, *the* -> *du*).
    """
    src: Tuple[str, ...]
    tgt: Tuple[str, ...]
    alignment: Tuple[Link, ...]

    @property
    def src_text(self) -> str:
        return " ".join(self.src)

    @property
    def tgt_text(self) -> str:
        return " ".join(self.tgt)

    def alignment_matrix(self, dtype: torch.dtype = torch.float32, device=None) -> Tensor:
        """Gold alignment as a (len(tgt), len(src)) matrix, 1 where linked: the layout of
        the attention weights of one sentence (rows = target positions = queries)."""
        m = torch.zeros(len(self.tgt), len(self.src), dtype=dtype, device=device)
        if self.alignment:
            idx = torch.tensor(self.alignment, device=device)
            m[idx[:, 1], idx[:, 0]] = 1
        return m

    @property
    def monotone(self) -> bool:
        """True when no two links cross (no reordering between the two sentences)."""
        links = sorted(self.alignment)
        best = -1
        for _, j in links:  # sorted by source index: target indices must not decrease
            if j < best:
                return False
            best = j
        return True


def sample_pair(rng: random.Random, length: int) -> Pair:
    """One random pair whose source has ``length`` tokens (a little fewer in the rare case
    the grammar cannot hit it exactly). ``rng``: a ``random.Random``; ``length`` >= 3."""
    if not isinstance(rng, random.Random):
        raise TypeError(f"rng must be a random.Random, got {type(rng).__name__}")
    if not isinstance(length, int) or length < 3:
        raise ValueError(f"length must be an int >= 3 (the shortest sentence is 'he sleeps .'),"
                         f" got {length!r}")
    return _pair(_render(_grow(rng, length)))


def _pair(out: _Out) -> Pair:
    return Pair(tuple(out.en), tuple(out.fr), tuple(sorted(set(out.links))))


# =========================================================================== tokens
_TOKEN_RE = re.compile(r"[^\W\d_]+'|\w+|[^\w\s]")


def tokenize(text: str) -> List[str]:
    """Lowercase and split into words and punctuation: ``"L'homme dort."`` ->
    ``["l'", "homme", "dort", "."]``. An elided word keeps its apostrophe (l', j', qu', d',
    n'); typographic apostrophes are normalised to '. The corpus is generated already
    tokenised this way: ``tokenize(detokenize(tokens)) == tokens``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return _TOKEN_RE.findall(text.lower().replace("\u2019", "'"))


def detokenize(tokens: Sequence[str]) -> str:
    """Join tokens for display: no space after an elided word (l'homme) or before
    punctuation (dort.)."""
    text = ""
    for k, t in enumerate(tokens):
        if k and not text.endswith("'") and not re.fullmatch(r"[^\w\s]", t):
            text += " "
        text += t
    return text


class Vocab:
    """Token <-> id mapping with the four special tokens first: <pad> = 0, <bos> = 1,
    <eos> = 2, <unk> = 3. Unknown tokens encode to <unk>.

    Build one with ``Vocab.build(sentences, min_freq=1)``: tokens sorted by decreasing
    frequency, ties alphabetically, so the same data gives the same ids.
    """
    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, tokens: Iterable[str]):
        itos = list(SPECIALS)
        seen = set(itos)
        for t in tokens:
            if not isinstance(t, str):
                raise TypeError(f"tokens must be str, got {type(t).__name__}: {t!r}")
            if t not in seen:
                itos.append(t)
                seen.add(t)
        self.itos: List[str] = itos
        self.stoi: Dict[str, int] = {t: i for i, t in enumerate(itos)}

    @classmethod
    def build(cls, sentences: Iterable[Sequence[str]], min_freq: int = 1) -> "Vocab":
        """Vocabulary of the tokens that occur at least ``min_freq`` times in ``sentences``."""
        if not isinstance(min_freq, int) or min_freq < 1:
            raise ValueError(f"min_freq must be an int >= 1, got {min_freq!r}")
        counts = Counter()
        for s in sentences:
            if isinstance(s, str):
                raise TypeError("sentences must be sequences of tokens, not strings "
                                "(use tokenize(text) first)")
            counts.update(s)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in SPECIALS),
                      key=lambda t: (-counts[t], t))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token) -> bool:
        return token in self.stoi

    def __getitem__(self, token: str) -> int:
        return self.stoi.get(token, self.unk_id)

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)}, first={self.itos[4:10]})"

    def encode(self, tokens: Sequence[str], *, bos: bool = False, eos: bool = False) -> List[int]:
        """Ids of ``tokens`` (unknown -> <unk>), optionally with <bos> first / <eos> last."""
        if isinstance(tokens, str):
            raise TypeError("encode takes a sequence of tokens, not a string "
                            "(use tokenize(text) first)")
        ids = [self.stoi.get(t, self.unk_id) for t in tokens]
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Union[Sequence[int], Tensor], *, strip: bool = True) -> List[str]:
        """Tokens of ``ids``. With ``strip`` (default) stop at the first <eos> and drop <pad>
        and <bos>: what a decoder produced, as the tokens of a sentence."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be 1-D, got shape {tuple(ids.shape)}")
            ids = ids.tolist()
        out = []
        for i in ids:
            i = int(i)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"id {i} is out of range for a vocabulary of size {len(self)}")
            if strip:
                if i == self.eos_id:
                    break
                if i in (self.pad_id, self.bos_id):
                    continue
            out.append(self.itos[i])
        return out


# =========================================================================== batches
def pad_sequences(seqs: Sequence[Sequence[int]], pad_id: int = 0,
                  device=None) -> Tuple[Tensor, Tensor]:
    """Pad id sequences to one tensor.

    Returns ``(ids, lengths)``: ids (B, N) long with N the longest length, filled with
    ``pad_id`` after each sequence; lengths (B,) long. Build the matching bool mask with
    ``attention_lib.masks.padding_mask(lengths)`` (True = real token).
    """
    if len(seqs) == 0:
        raise ValueError("seqs is empty: nothing to pad")
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    ids = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for b, s in enumerate(seqs):
        if len(s):
            ids[b, :len(s)] = torch.as_tensor(s, dtype=torch.long)
    return ids.to(device), lengths.to(device)


@dataclass(frozen=True)
class Batch:
    """A padded batch (all long tensors, batch first).

    src: (B, S) source ids + <eos>;  src_len: (B,) including <eos>.
    tgt_in: (B, T) <bos> + target ids;  tgt_out: (B, T) target ids + <eos>;
    tgt_len: (B,) including <eos> (the number of decoder steps).
    index: (B,) positions of the pairs in ``Corpus.pairs`` (for references and alignments).
    Padding is <pad> = 0 everywhere.

    Iterating yields the five tensors the training loop needs, so
    ``src, src_len, tgt_in, tgt_out, tgt_len = batch`` works; ``index`` is an attribute only.
    """
    src: Tensor
    src_len: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    tgt_len: Tensor
    index: Tensor

    def __iter__(self):
        return iter((self.src, self.src_len, self.tgt_in, self.tgt_out, self.tgt_len))

    def __len__(self) -> int:
        return 5

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device) for t in (self.src, self.src_len, self.tgt_in,
                                               self.tgt_out, self.tgt_len, self.index)))


def make_batch(pairs: Sequence[Pair], src_vocab: Vocab, tgt_vocab: Vocab,
               index: Optional[Sequence[int]] = None, device=None) -> Batch:
    """Encode and pad ``pairs`` into a :class:`Batch` (see there for shapes)."""
    if len(pairs) == 0:
        raise ValueError("pairs is empty: a batch needs at least one pair")
    src, src_len = pad_sequences([src_vocab.encode(p.src, eos=True) for p in pairs])
    tgt = [tgt_vocab.encode(p.tgt) for p in pairs]
    tgt_in, tgt_len = pad_sequences([[tgt_vocab.bos_id] + t for t in tgt])
    tgt_out, _ = pad_sequences([t + [tgt_vocab.eos_id] for t in tgt])
    idx = torch.tensor(list(range(len(pairs))) if index is None else list(index),
                       dtype=torch.long)
    return Batch(src, src_len, tgt_in, tgt_out, tgt_len, idx).to(device)


def bucket_batches(lengths: Sequence[int], batch_size: int, *, shuffle: bool = True,
                   generator: Optional[torch.Generator] = None,
                   drop_last: bool = False) -> List[List[int]]:
    """Group positions ``0..len(lengths)-1`` into batches of similar length.

    Sorting by length before cutting batches keeps padding small (a batch of 40-token
    sentences does not carry 60 columns because of one long sentence). With ``shuffle``,
    equal lengths are ordered at random and the batches are returned in random order,
    both drawn from ``generator`` (a ``torch.Generator``; default: torch's global one).
    Returns a list of lists of positions; every position appears once (unless
    ``drop_last`` drops the last, smaller batch).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    n = len(lengths)
    if shuffle:
        perm = torch.randperm(n, generator=generator).tolist()
    else:
        perm = list(range(n))
    order = sorted(perm, key=lambda i: lengths[i])  # stable: random order within a length
    batches = [order[k:k + batch_size] for k in range(0, n, batch_size)]
    if drop_last and batches and len(batches[-1]) < batch_size:
        batches.pop()
    if shuffle:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches


# =========================================================================== corpus
def split_indices(lengths: Sequence[int], fractions: Sequence[float], seed: int) -> List[List[int]]:
    """Split positions into parts of the given ``fractions``, stratified by length.

    Within each length the order is random (from ``seed``); walking through all positions
    sorted by length, each goes to the part furthest behind its share, so every part gets
    its fraction of every length range. Returns one sorted list of positions per part.
    """
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {tuple(fractions)}")
    rng = random.Random(seed)
    keys = [rng.random() for _ in lengths]
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], keys[i]))
    parts: List[List[int]] = [[] for _ in fractions]
    for k, i in enumerate(order):
        deficit = [(k + 1) * f - len(p) for f, p in zip(fractions, parts)]
        parts[max(range(len(parts)), key=lambda s: deficit[s])].append(i)
    return [sorted(p) for p in parts]


@dataclass(repr=False)
class Corpus:
    """A generated parallel corpus: pairs, splits and vocabularies.

    pairs: every pair (unique sources and unique targets). splits: ``{"train": [...],
    "valid": [...], "test": [...]}`` positions into ``pairs``, stratified by length; no
    source or target sentence occurs in two splits. Vocabularies are built on the training
    split (a token seen only in valid/test encodes to <unk>).
    """
    pairs: List[Pair]
    splits: Dict[str, List[int]]
    src_vocab: Vocab
    tgt_vocab: Vocab
    seed: int
    min_len: int
    max_len: int

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return (f"Corpus({len(self.pairs)} pairs: {sizes}; lengths {self.min_len}-"
                f"{self.max_len}; vocab src={len(self.src_vocab)} tgt={len(self.tgt_vocab)}; "
                f"seed={self.seed})")

    def split(self, name: str) -> List[Pair]:
        """The pairs of one split."""
        return [self.pairs[i] for i in self._split_index(name)]

    def _split_index(self, name: str) -> List[int]:
        if name not in self.splits:
            raise ValueError(f"split must be one of {sorted(self.splits)}, got {name!r}")
        return self.splits[name]

    def batch(self, index: Sequence[int], device=None) -> Batch:
        """The pairs at positions ``index`` (into ``pairs``) as one padded :class:`Batch`."""
        index = [int(i) for i in index]
        return make_batch([self.pairs[i] for i in index], self.src_vocab, self.tgt_vocab,
                          index, device)

    def batches(self, split: str = "train", batch_size: int = 64, *, shuffle: bool = True,
                generator: Optional[torch.Generator] = None, bucket: bool = True,
                drop_last: bool = False, device=None) -> "Batches":
        """The padded batches of one split, as a re-iterable :class:`Batches`: each
        ``for batch in ...`` is one epoch, reshuffled from ``generator``.

        bucket: batches of similar source length (:func:`bucket_batches`); otherwise
        consecutive pairs (shuffled first when ``shuffle``). Shuffling draws from
        ``generator`` only, so a seeded generator gives the same epochs on every run.
        """
        return Batches(self, split, batch_size, shuffle=shuffle, generator=generator,
                       bucket=bucket, drop_last=drop_last, device=device)

    def lengths(self, split: Optional[str] = None) -> List[int]:
        """Source lengths (tokens, full stop included) of a split, or of all pairs."""
        pairs = self.pairs if split is None else self.split(split)
        return [len(p.src) for p in pairs]

    def summary(self) -> Dict[str, object]:
        """Counts per split, vocabulary sizes and source-length statistics."""
        lens = self.lengths()
        return {
            "pairs": len(self.pairs),
            **{f"n_{k}": len(v) for k, v in self.splits.items()},
            "src_vocab": len(self.src_vocab), "tgt_vocab": len(self.tgt_vocab),
            "min_len": min(lens), "max_len": max(lens),
            "mean_len": sum(lens) / len(lens),
            "mean_tgt_len": sum(len(p.tgt) for p in self.pairs) / len(self.pairs),
            "monotone_fraction": sum(p.monotone for p in self.pairs) / len(self.pairs),
        }


class Batches:
    """The batches of one split of a :class:`Corpus` (made by :meth:`Corpus.batches`).

    Re-iterable: every ``iter()`` is one epoch over the split, in a fresh order drawn from
    ``generator`` when ``shuffle``; ``len()`` is the number of batches per epoch. A training
    loop that cycles through its ``batches`` argument can therefore take it directly, e.g.
    ``train_seq2seq(model, corpus.batches("train", 64, generator=g), steps=...)``.
    """

    def __init__(self, corpus: "Corpus", split: str, batch_size: int, *, shuffle: bool = True,
                 generator: Optional[torch.Generator] = None, bucket: bool = True,
                 drop_last: bool = False, device=None):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.corpus, self.index = corpus, corpus._split_index(split)
        self.batch_size, self.shuffle, self.generator = batch_size, shuffle, generator
        self.bucket, self.drop_last, self.device = bucket, drop_last, device

    def __len__(self) -> int:
        n = len(self.index)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        idx, bs = self.index, self.batch_size
        if self.bucket:
            groups = bucket_batches([len(self.corpus.pairs[i].src) for i in idx], bs,
                                    shuffle=self.shuffle, generator=self.generator,
                                    drop_last=self.drop_last)
        else:
            order = (torch.randperm(len(idx), generator=self.generator).tolist()
                     if self.shuffle else list(range(len(idx))))
            groups = [order[k:k + bs] for k in range(0, len(idx), bs)]
            if self.drop_last and groups and len(groups[-1]) < bs:
                groups.pop()
        for g in groups:
            yield self.corpus.batch([idx[k] for k in g], self.device)


def make_corpus(n_pairs: int, *, seed: int = 0, min_len: int = 3, max_len: int = 60,
                fractions: Sequence[float] = (0.8, 0.1, 0.1)) -> Corpus:
    """Generate ``n_pairs`` distinct sentence pairs and split them into train/valid/test.

    Source lengths (tokens, full stop included) are drawn uniformly from
    ``[min_len, max_len]``; the shortest sentences ("he sleeps .") have 3 tokens and there
    are few of them, so lengths below ~6 are under-represented once duplicates are dropped.
    Deterministic: the same arguments give the same corpus.

    n_pairs: number of pairs (>= 3 so that every split is non-empty).
    seed: int. min_len, max_len: 3 <= min_len <= max_len.
    fractions: (train, valid, test) shares, stratified by length.
    """
    if not isinstance(n_pairs, int) or n_pairs < 3:
        raise ValueError(f"n_pairs must be an int >= 3, got {n_pairs!r}")
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not isinstance(min_len, int) or not isinstance(max_len, int):
        raise TypeError(f"min_len and max_len must be ints, got {min_len!r}, {max_len!r}")
    if min_len < 3 or max_len < min_len:
        raise ValueError(f"need 3 <= min_len <= max_len, got min_len={min_len}, "
                         f"max_len={max_len}")
    if len(fractions) != 3:
        raise ValueError(f"fractions must be (train, valid, test), got {tuple(fractions)}")
    rng = random.Random(seed)
    pairs: List[Pair] = []
    seen_src, seen_tgt = set(), set()
    attempts, budget = 0, 50 * n_pairs + 1000
    while len(pairs) < n_pairs:
        attempts += 1
        if attempts > budget:
            raise ValueError(f"could only generate {len(pairs)} distinct pairs with lengths "
                             f"in [{min_len}, {max_len}]; widen the range or ask for fewer")
        out = _render(_grow(rng, rng.randint(min_len, max_len)))
        if not min_len <= len(out.en) <= max_len:
            continue
        s, t = " ".join(out.en), " ".join(out.fr)
        if s in seen_src or t in seen_tgt:
            continue
        seen_src.add(s)
        seen_tgt.add(t)
        pairs.append(_pair(out))
    parts = split_indices([len(p.src) for p in pairs], fractions, seed)
    splits = dict(zip(("train", "valid", "test"), parts))
    if any(len(v) == 0 for v in splits.values()):
        raise ValueError(f"a split is empty with n_pairs={n_pairs} and fractions={fractions}")
    train = [pairs[i] for i in splits["train"]]
    return Corpus(pairs, splits, Vocab.build(p.src for p in train),
                  Vocab.build(p.tgt for p in train), seed, min_len, max_len)


# The synthetic scenes with captions and gold regions (chapter 18) are generated in
# attention_lib.scenes; they are reachable from here too, so that every data generator of the
# course is in one module (not in __all__: the package re-exports them from scenes).
from .scenes import Scene, SceneBatch, make_scene, make_scenes, scene_batches, scene_vocab  # noqa: E402,F401
