"""studylib.analysis.paper: every paper table loads from the package's own data."""

from importlib import resources
from pathlib import Path

import pytest

import studylib
from studylib.analysis import paper
from studylib.evaluation import metrics

# The paper's printed tables; `benchmark_guessers` beside them holds the real benchmarks'
# published guesser scores, which the paper does not print.
GUESSERS = "benchmark_guessers"
TABLES = sorted(p.name.removesuffix(".csv") for p in paper.PAPER_TABLES.iterdir()
                if p.name.endswith(".csv") and p.name != f"{GUESSERS}.csv")


def test_the_tables_are_package_data_not_book_files():
    where = Path(str(paper.PAPER_TABLES)).resolve()
    assert where.is_relative_to(Path(studylib.__file__).resolve().parent)
    assert "book" not in where.relative_to(Path(studylib.__file__).resolve().parent).parts
    assert str(resources.files("studylib.analysis") / "paper_tables") == str(paper.PAPER_TABLES)
    assert len(TABLES) == 7


def test_the_real_benchmarks_guessers_cite_their_source():
    t = paper.paper_table(GUESSERS)
    assert list(t.columns) == ["benchmark", "guesser", "source"] and t.source.str.len().min() > 20
    guessers = paper.benchmark_guessers()
    assert set(guessers) == set(metrics.PAPER_KEYS) - {"GQA"}  # open answers: no guesser
    assert guessers["MME-P"] == metrics.CHANCE["MME-P"] and guessers["POPE"] == 50.0
    for model in paper.PAPER_MODELS:
        assert set(paper.paper_unpruned(model)) == set(metrics.PAPER_KEYS), model


@pytest.mark.parametrize("name", TABLES)
def test_every_table_loads(name):
    t = paper.paper_table(name)
    assert len(t) >= 4 and "ratio" in t.columns and t.ratio.between(0, 1).all()


def test_a_missing_table_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="paper table not found"):
        paper.paper_table("table99")


def test_model_facts_read_from_the_tables():
    assert paper.paper_unpruned("LLaVA-v1.5-7B")["GQA"] == 61.98
    assert set(paper.paper_unpruned("Bunny-v1.0-3B")) == set(metrics.PAPER_KEYS)
    assert paper.paper_unpruned("GPT-5") == {}
    assert paper.paper_params_b("LLaVA-v1.5-7B") == 7.0
    assert paper.paper_params_b("Bunny-v1.0-3B") == 3.2 and paper.paper_params_b("x") is None
    assert paper.paper_resources("LLaVA-v1.5-7B", "none", 0.0) == (13546, 9.57)
    assert paper.paper_resources("LLaVA-v1.5-7B", "width", 0.0) == (13546, 9.57)
    assert paper.paper_resources("Bunny-v1.0-3B", "layer", 0.6) == (3006, 2.22)
    assert paper.paper_resources("LLaVA-v1.5-7B", "width", 0.5) == (None, None)


def test_names_and_recipes_match_the_tables():
    for arch, model in paper.PAPER_MODEL.items():
        assert model in set(paper.paper_table("table6_pruning_only").model) or \
            model == paper.TABLE10_11_MODEL, arch
    assert set(paper.TABLE2_RECIPES) <= set(paper.paper_table("table2_bunny_layer_kd").columns)
    t10 = paper.paper_table("table10_11_internvl")
    assert set(t10.recipe) == set(paper.TABLE10_11_RECIPES) and set(t10.model) == {
        paper.TABLE10_11_MODEL}
    assert set(paper.SHORT_PAPER_NAME) == set(paper.PAPER_MODELS) == {
        paper.TABLE2_MODEL, paper.TABLE9_MODEL, paper.TABLE10_11_MODEL}


@pytest.mark.parametrize("ratio, method", [(0.15, "layer"), (0.3, "layer"), (0.45, "width"),
                                           (0.6, "width")])
def test_prescribed_method_follows_table3(ratio, method):
    t3 = paper.paper_table("table3_best_practice")
    printed = t3[(t3.ratio - ratio).abs() < 1e-9].recipe
    assert paper.prescribed_method(ratio) == method
    assert (printed == f"{method}+FT+L2").all() and len(printed) > 0
