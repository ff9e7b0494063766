"""Retrieval's packing and relevance cutoff at their edges: a section that does not fit makes room for smaller ones,
the budget holds to the token, and the cutoff is a fraction of the best non-core match, never of a core section."""

from __future__ import annotations

import pytest

from dream_graph.docs import Section
from dream_graph.retrieval import _cost, build_index, relevance, select_sections, tokenize

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda omicron sigma upsilon omega "


def section(heading: str, text: str, pad_words: int = 0) -> Section:
    """A section whose size is set by padding with words the queries never use."""
    padding = " ".join((WORDS * (pad_words // 15 + 1)).split()[:pad_words])
    return Section("doc.md", heading, f"{text} {padding}")


def scores(sections: list[Section], query: str) -> list[float]:
    return relevance(build_index(sections), tokenize(query), len(sections))


def chosen(selection) -> list[str]:
    return [s.heading for s in selection.sections]


# Ranked for "kafka topic": big first, then medium, then small; none of them core.
BIG = section("big", "kafka topic kafka topic kafka topic", pad_words=240)
MEDIUM = section("medium", "kafka topic kafka", pad_words=90)
SMALL = section("small", "kafka", pad_words=20)
RANKED = [BIG, MEDIUM, SMALL]
QUERY = "kafka topic"


def test_the_samples_rank_big_medium_small_and_grow_in_that_order():
    big, medium, small = scores(RANKED, QUERY)
    assert big > medium > small > 0
    assert _cost(BIG) > _cost(MEDIUM) + _cost(SMALL) and _cost(MEDIUM) > _cost(SMALL)


def test_a_section_that_does_not_fit_makes_room_for_the_smaller_ones_after_it():
    budget = _cost(MEDIUM) + _cost(SMALL)  # the best match (big) is over it on its own
    picked = select_sections(RANKED, QUERY, budget)
    assert chosen(picked) == ["medium", "small"]
    assert picked.tokens == budget and picked.dropped == 1


def test_packing_skips_a_middle_section_and_fills_the_budget_exactly():
    budget = _cost(BIG) + _cost(SMALL)
    assert chosen(select_sections(RANKED, QUERY, budget)) == ["big", "small"], "medium skipped, small fits exactly"
    assert chosen(select_sections(RANKED, QUERY, budget - 1)) == ["big"], "one token short: small is left out"


@pytest.mark.parametrize(("extra", "expected"), [(0, ["medium"]), (-1, [])])
def test_the_budget_holds_to_the_token(extra, expected):
    picked = select_sections(RANKED, QUERY, _cost(MEDIUM) + extra, min_score=0.9)  # small is under the cutoff
    assert chosen(picked) == expected
    assert picked.tokens <= _cost(MEDIUM) + extra


# ---------------------------------------------------------------- the relevance cutoff

CORE = section("Node API", "kafka topic " * 12 + "the interface every node implements")
BEST = section("best", "kafka topic", pad_words=10)
WEAK = section("weak", "kafka", pad_words=30)
UNRELATED = section("unrelated", "logging levels and handlers", pad_words=10)
DOCS = [CORE, BEST, WEAK, UNRELATED]
CORE_FLAGS = [True, False, False, False]


def test_the_core_section_outscores_every_other_one():
    core, best, weak, unrelated = scores(DOCS, QUERY)
    assert core > best > weak > 0 and unrelated == 0


def test_the_cutoff_is_a_fraction_of_the_best_non_core_match_not_of_the_core_section():
    core, best, weak, _ = scores(DOCS, QUERY)
    fraction = (weak / best + weak / core) / 2  # weak passes against the best non-core match, fails against core
    assert weak / core < fraction < weak / best
    picked = select_sections(DOCS, QUERY, 10_000, core=CORE_FLAGS, min_score=fraction)
    assert chosen(picked) == ["Node API", "best", "weak"]
    only_best = select_sections(DOCS, QUERY, 10_000, core=CORE_FLAGS, min_score=1.0)
    assert chosen(only_best) == ["Node API", "best"], "min_score 1 keeps the best non-core match, whatever core scores"


def test_the_cutoff_edge_keeps_a_section_at_it_and_drops_one_just_under():
    _, best, weak, _ = scores(DOCS, QUERY)
    ratio = weak / best
    kept = select_sections(DOCS, QUERY, 10_000, core=CORE_FLAGS, min_score=ratio * (1 - 1e-9))
    dropped = select_sections(DOCS, QUERY, 10_000, core=CORE_FLAGS, min_score=ratio * (1 + 1e-9))
    assert "weak" in chosen(kept) and "weak" not in chosen(dropped)
    assert "best" in chosen(dropped)


def test_a_section_matching_no_word_stays_out_even_with_room_and_no_cutoff_floor():
    picked = select_sections(DOCS, QUERY, 10_000, core=CORE_FLAGS, min_score=1e-12)
    assert "unrelated" not in chosen(picked)
    assert "unrelated" in chosen(select_sections(DOCS, QUERY, 10_000, core=CORE_FLAGS, min_score=0.0)), (
        "min_score 0 turns the cutoff off: fill the budget by rank"
    )


# ---------------------------------------------------------------- queries and docs with nothing to match


def test_a_query_word_missing_from_every_section_changes_no_score():
    index = build_index(DOCS)
    with_unknown = relevance(index, tokenize("kafka topic zeppelin"), len(DOCS))
    assert with_unknown == relevance(index, tokenize("kafka topic"), len(DOCS))
    assert with_unknown[1] > 0, "the known words still score"


def test_a_query_of_stopwords_only_keeps_the_core_and_nothing_else():
    assert tokenize("what is the and of it") == []
    assert relevance(build_index(DOCS), [], len(DOCS)) == [0.0] * len(DOCS)
    picked = select_sections(DOCS, "what is the and of it", 10_000, core=CORE_FLAGS, min_score=0.35)
    assert chosen(picked) == ["Node API"], "no word to match: no section is relevant, only the core goes in"


def test_docs_without_one_indexable_word_are_filled_by_rank_within_the_budget():
    bare = [Section("a.md", "It", "the and of"), Section("b.md", "Is", "it is a"), Section("c.md", "To", "to be")]
    assert build_index(bare) is None
    assert relevance(None, tokenize("kafka topic"), 3) == [0.0, 0.0, 0.0]
    picked = select_sections(bare, "kafka topic", _cost(bare[0]) + _cost(bare[1]), min_score=0.35)
    assert chosen(picked) == ["It", "Is"], "nothing matches and nothing is core: fill by rank, not with nothing"


# ---------------------------------------------------------------- the edges of the helpers packing relies on


def test_plural_s_comes_off_words_of_four_letters_or_more_but_not_off_ss():
    assert tokenize("gas maps class bus streams") == ["gas", "map", "class", "bus", "stream"]


def test_a_sections_document_title_is_indexed_with_it():
    doc = [Section("cli.md", "The aineko command line", "usage overview"), Section("cli.md", "aineko run", "starts a pipeline")]
    scores_ = relevance(build_index(doc), tokenize("command line"), 2)
    assert scores_[1] > 0, "'aineko run' matches 'command line' through its document's title"


def test_costs_count_one_joining_line_per_section():
    assert [_cost(s) for s in RANKED] == [s.tokens + 1 for s in RANKED]
    everything = select_sections(RANKED, QUERY, 0)
    assert chosen(everything) == ["big", "medium", "small"]
    assert everything.tokens == sum(s.tokens for s in RANKED) + 3


@pytest.mark.parametrize("bad", [-0.01, 1.01])
def test_min_score_outside_zero_to_one_is_refused(bad):
    with pytest.raises(ValueError, match="docs min score must be a fraction"):
        select_sections(RANKED, QUERY, 100, min_score=bad)
    assert select_sections(RANKED, QUERY, 10_000, min_score=1.0).sections  # 1 itself is fine


def test_packing_follows_the_score_not_the_document_order():
    picked = select_sections([SMALL, MEDIUM], QUERY, _cost(MEDIUM), min_score=0.0)
    assert chosen(picked) == ["medium"], "the better match first, though it comes later in the docs"


@pytest.mark.parametrize(("extra", "warned"), [(0, False), (-1, True)])
def test_core_sections_alone_warn_only_when_over_the_budget(extra, warned):
    picked = select_sections(DOCS, QUERY, _cost(CORE) + extra, core=CORE_FLAGS, min_score=0.35)
    assert chosen(picked) == ["Node API"], "the core is kept even over the budget"
    assert bool(picked.warnings) is warned


def test_docs_that_are_all_core_need_no_cutoff():
    picked = select_sections([CORE], QUERY, 10_000, core=[True], min_score=0.5)
    assert chosen(picked) == ["Node API"] and picked.warnings == []
