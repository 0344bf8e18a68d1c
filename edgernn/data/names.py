"""
Bundled token set `names`: a first name's letters -> the region the name comes from (classify, chars).

    ds = names(seed=0)             # ~36,000 names in 9 regions, split by name (a test name is never trained on)
    ds.summary(), ds.labels        # labels: the REGIONS keys, sorted

The data is Jörg Michael's first-name dictionary `nam_dict.txt` (GNU Free Documentation License), shipped in the
PyPI package gender-guesser (`pip install 'edgernn[text]'`), read as its detector.py reads it: lines starting
with '#' or '=' are comments (or name equivalences); a data line holds a gender code, the name at columns 3-28,
a sort marker at column 29, and from column 30 one character per country in the order of
gender_guesser.detector.Detector.COUNTRIES: the name's frequency there, ' ' = absent, 1 (rare) .. 9, A .. D
(= 13, extremely common; a logarithmic scale).

How a name gets its label:
  - lines with '+' at column 29 are skipped: the file marks them as repeats of '-' lines sorted another way;
  - names holding '+' (multi-part Arabic/Chinese/Korean names: "Jun+Wei" = Jun-Wei, Jun Wei, Junwei) are dropped;
  - names are lower-cased (Turkish dotted 'İ' -> 'i', so it stays one character); a name on several lines
    (e.g. once per gender) keeps the highest frequency per country;
  - a region's score is the highest frequency over its countries; the label is the region with the highest
    score. Names whose top score ties between regions (common international names such as "anna") are dropped,
    and so are names found only under "other countries".

The 9 regions group the 54 countries by language family first, geography second:
  english         great_britain ireland usa
  romance         italy malta portugal spain france belgium luxembourg romania moldova
                  (Belgium and Luxembourg are bilingual, their names mostly French; Malta's mostly Italian)
  germanic        the_netherlands east_frisia germany austria swiss
  nordic          iceland denmark norway sweden finland estonia (Finnish and Estonian are Finnic, not Germanic,
                  but their first names are largely shared Nordic ones)
  slavic_baltic   poland czech_republic slovakia russia belarus ukraine bulgaria bosniaand croatia macedonia
                  montenegro serbia slovenia latvia lithuania hungary (Hungarian is Uralic: grouped with its
                  Central European neighbours)
  greek_albanian  greece albania kosovo (two Indo-European isolates of the southern Balkans; Kosovo's names
                  are mostly Albanian)
  west_asian      turkey arabia israel armenia azerbaijan georgia the_stans (Turkic, Arabic/Persian, Hebrew
                  and Caucasian names)
  east_asian      china japan korea vietnam
  south_asian     india (India / Sri Lanka)
"other_countries" (12 names) is dropped. A region with fewer than MIN_REGION names would be dropped too (a class
too small to learn or to score); with the dictionary as shipped (2008) none is: the smallest, south_asian, has
about 1,300 names (counts: NAMES_COUNTS below, checked by the tests).
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

from edgernn.data.tokens import TokenDataset, split_keys
from edgernn.errors import DataError, MissingDependencyError
from edgernn.runtimes.vocab import Vocab

REGIONS = {
    "english": "great_britain ireland usa",
    "romance": "italy malta portugal spain france belgium luxembourg romania moldova",
    "germanic": "the_netherlands east_frisia germany austria swiss",
    "nordic": "iceland denmark norway sweden finland estonia",
    "slavic_baltic": "poland czech_republic slovakia russia belarus ukraine bulgaria bosniaand croatia macedonia "
                     "montenegro serbia slovenia latvia lithuania hungary",
    "greek_albanian": "greece albania kosovo",
    "west_asian": "turkey arabia israel armenia azerbaijan georgia the_stans",
    "east_asian": "china japan korea vietnam",
    "south_asian": "india",
}
REGIONS = {r: tuple(cs.split()) for r, cs in REGIONS.items()}
DROPPED_COUNTRIES = ("other_countries",)
MIN_REGION = 200  # fewer names than this: the region is dropped
# names per region with the shipped dictionary, all splits together (names(): printed by `python -m edgernn.data.names`)
NAMES_COUNTS = {"english": 3808, "romance": 6945, "germanic": 5308, "nordic": 3530, "slavic_baltic": 5693,
                "greek_albanian": 2119, "west_asian": 5172, "east_asian": 2095, "south_asian": 1280}
FIRST_COUNTRY_COLUMN = 30  # 0-based: the dictionary's "column 30" as its header draws it
SOURCE = ("first names -> region of origin, from Jörg Michael's name dictionary (nam_dict.txt) shipped in the "
          "PyPI package gender-guesser (GNU FDL)")


def names(seed: int = 0, test_frac: float = 0.2) -> TokenDataset:
    """First names (lower-case letters, one token per character) -> region of origin; a seeded split by name."""
    labelled = labelled_names(str(dictionary_path()))
    train_keys, test_keys = split_keys([n for n, _ in labelled], test_frac, seed)
    train = [(n, r) for n, r in labelled if n in train_keys]
    test = [(n, r) for n, r in labelled if n in test_keys]
    src_train = [list(n) for n, _ in train]
    labels = sorted({r for _, r in labelled})
    counts = {r: sum(1 for _, x in labelled if x == r) for r in labels}
    return TokenDataset(
        name="names", task="classify", tokenizer="chars",
        src_train=src_train, tgt_train=[r for _, r in train],
        src_test=[list(n) for n, _ in test], tgt_test=[r for _, r in test],
        src_vocab=Vocab.build(src_train), labels=labels,
        description=(f"{SOURCE}: {len(labelled):,} names in {len(labels)} regions "
                     f"({', '.join(f'{r} {c:,}' for r, c in counts.items())}), split by name "
                     f"({len(train):,} train / {len(test):,} test)"),
        source=SOURCE, lowercase=True)


@lru_cache(maxsize=2)
def labelled_names(path: str) -> tuple:
    """((name, region), ...) sorted by name: every name of the dictionary at path with a clear region."""
    path = Path(path)
    try:
        from gender_guesser.detector import Detector
    except ImportError as exc:
        raise MissingDependencyError("the names set needs the gender-guesser package (its country order): "
                                     "pip install 'edgernn[text]'") from exc
    countries = list(Detector.COUNTRIES)
    freqs = read_frequencies(path, len(countries))
    missing = sorted({c for cs in REGIONS.values() for c in cs} - set(countries))
    if missing:
        raise DataError(f"{path}: gender-guesser no longer lists the countries {', '.join(missing)}; "
                        "edgernn.data.names.REGIONS needs updating for this gender-guesser version")
    columns = {r: [countries.index(c) for c in cs] for r, cs in REGIONS.items()}
    out = []
    for name, freq in freqs.items():
        scores = {r: max(freq[i] for i in idx) for r, idx in columns.items()}
        top = max(scores.values())
        winners = [r for r, s in scores.items() if s == top]
        if top > 0 and len(winners) == 1:
            out.append((name, winners[0]))
    sizes = {r: sum(1 for _, x in out if x == r) for r in REGIONS}
    small = {r for r, n in sizes.items() if n < MIN_REGION}
    return tuple(sorted((n, r) for n, r in out if r not in small))


def read_frequencies(path: Path, n_countries: int) -> dict:
    """{lower-case name: [frequency 0..13 per country]} from nam_dict.txt, merged over repeated names (max)."""
    freqs: dict[str, list] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the name dictionary ({exc}); reinstall gender-guesser") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip() or line[0] in "#=":
            continue
        if len(line) <= FIRST_COUNTRY_COLUMN or line[FIRST_COUNTRY_COLUMN - 1] == "+":
            continue  # too short to hold a frequency / a repeat of a '-' line (the file says to skip these)
        name = line[3:FIRST_COUNTRY_COLUMN - 1].strip()
        if not name or "+" in name or " " in name:
            continue
        name = name.replace("İ", "i").lower()
        row = []
        for ch in line[FIRST_COUNTRY_COLUMN:FIRST_COUNTRY_COLUMN + n_countries]:
            if ch == " ":
                row.append(0)
            elif ch in "123456789ABCD":
                row.append(int(ch, 16))
            else:
                raise DataError(f"{path}: line {n}: frequency {ch!r} is not 1-9 or A-D; reinstall gender-guesser")
        row += [0] * (n_countries - len(row))
        old = freqs.get(name)
        freqs[name] = row if old is None else [max(a, b) for a, b in zip(old, row)]
    return freqs


def dictionary_path() -> Path:
    """gender_guesser/data/nam_dict.txt of the installed package, or MissingDependencyError."""
    spec = importlib.util.find_spec("gender_guesser")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("the names set needs the gender-guesser package (it ships the name "
                                     "dictionary): pip install 'edgernn[text]'")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / "nam_dict.txt"
        if path.is_file():
            return path
    raise MissingDependencyError("gender-guesser is installed without its data/nam_dict.txt; reinstall it: "
                                 "pip install --force-reinstall gender-guesser (or pip install 'edgernn[text]')")


if __name__ == "__main__":  # the class counts documented above
    pairs = labelled_names(str(dictionary_path()))
    for region in REGIONS:
        print(f"{region:16s} {sum(1 for _, r in pairs if r == region):6,d}")
    print(f"{'total':16s} {len(pairs):6,d}")
