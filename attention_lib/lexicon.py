"""The English/French lexicon of the Part I grammar (:mod:`attention_lib.grammar`).

Nouns with their gender and plural, adjectives with their four French forms and whether they
precede the noun, verbs conjugated in the present tense, pronouns, prepositions (with the
links of their gold alignment), determiners, adverbs and conjunctions, and the small helpers
that agree a French word with its noun.
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional, Tuple

#: A link of a gold alignment: (source index, target index).
Link = Tuple[int, int]

__all__ = ["Noun", "Adjective", "Verb", "NOUNS", "ADJECTIVES", "VERBS"]


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
