"""results/RESULTS.md, the README's table and `make train`'s TRAIN_ARGS are what the result files give."""


def test_results_md_readme_table_and_train_args_are_current(load_script, capsys):
    report = load_script("benchmarks/results_report.py")
    assert report.main(["--check"]) == 0, capsys.readouterr().err


def test_the_choice_is_made_on_validation_only(load_script):
    report = load_script("benchmarks/results_report.py")

    def runs(validation, test):
        return [(seed, {"exclude_history": {"ndcg@10": t}}, {"fame": {"training": {"best_validation": {"ndcg@10": v}}}})
                for seed, (v, t) in enumerate(zip(validation, test))]

    default = report.CURRENT_DEFAULT
    groups = {}
    for dataset in report.DATASETS:
        groups[dataset, default, "fame"] = runs([0.50, 0.50, 0.50], [0.9, 0.9, 0.9])
        groups[dataset, "better_everywhere", "fame"] = runs([0.52, 0.52, 0.52], [0.1, 0.1, 0.1])  # worse on test
        groups[dataset, "two_seeds", "fame"] = runs([0.9, 0.9], [0.9, 0.9])
    groups[report.DATASETS[0], "better_once", "fame"] = runs([0.99, 0.99, 0.99], [0.9, 0.9, 0.9])
    groups[report.DATASETS[1], "better_once", "fame"] = runs([0.49, 0.49, 0.49], [0.9, 0.9, 0.9])
    configurations = [default, "better_everywhere", "two_seeds", "better_once"]
    winner, ranking, note = report.choose(groups, configurations)
    # Above the default on both datasets; test numbers never looked at.
    assert (winner, note) == ("better_everywhere", "")
    assert [row[3] for row in ranking[report.DATASETS[0]]] == ["better_once", "better_everywhere", default]
    del groups[report.DATASETS[0], "better_everywhere", "fame"]
    assert report.choose(groups, configurations)[0] is None


def test_a_leader_within_one_std_of_the_incumbent_needs_five_seeds_to_replace_it(load_script):
    report = load_script("benchmarks/results_report.py")
    first, second = report.DATASETS

    def runs(validation):
        return [(seed, {}, {"fame": {"training": {"best_validation": {"ndcg@10": v}}}})
                for seed, v in enumerate(validation)]

    groups = {}
    for dataset in report.DATASETS:
        groups[dataset, report.CURRENT_DEFAULT, "fame"] = runs([0.50, 0.50, 0.50])
        groups[dataset, "incumbent", "fame"] = runs([0.60, 0.61, 0.62])
    groups[first, "leader", "fame"] = runs([0.61, 0.615, 0.62])  # within one std of the incumbent here
    groups[second, "leader", "fame"] = runs([0.70, 0.70, 0.71])  # far ahead here
    configurations = [report.CURRENT_DEFAULT, "incumbent", "leader"]
    assert report.choose(groups, configurations)[0] == "leader"  # no incumbent: the largest gain
    chosen, _, note = report.choose(groups, configurations, incumbent="incumbent")
    assert chosen == "incumbent"
    assert f"on {first} the two are within one std" in note and second not in note
    # Five seeds of both, still ahead on every dataset: the leader replaces the incumbent.
    groups[first, "incumbent", "fame"] = runs([0.60, 0.61, 0.62, 0.60, 0.61])
    groups[first, "leader", "fame"] = runs([0.61, 0.615, 0.62, 0.61, 0.62])
    assert report.choose(groups, configurations, incumbent="incumbent")[:3:2] == ("leader", "")
    # Behind the incumbent on one dataset: it holds, however many seeds.
    groups[first, "leader", "fame"] = runs([0.60, 0.60, 0.60, 0.60, 0.60])
    chosen, _, note = report.choose(groups, configurations, incumbent="incumbent")
    assert chosen == "incumbent" and f"on {first} its mean is not above" in note


def test_validation_pairs_are_the_other_configurations_minus_the_chosen_by_seed(load_script):
    report = load_script("benchmarks/results_report.py")
    compare = load_script("benchmarks/multi_seed.py").compare
    first, second = report.DATASETS

    def runs(validation, seeds=None):
        return [(seed, {}, {"fame": {"training": {"best_validation": {"ndcg@10": v}}}})
                for seed, v in zip(seeds or range(len(validation)), validation)]

    groups = {}
    for dataset in report.DATASETS:
        groups[dataset, report.CURRENT_DEFAULT, "fame"] = runs([0.50, 0.52, 0.51])
        groups[dataset, "chosen", "fame"] = runs([0.60, 0.61, 0.62, 0.63])
    groups[first, "other", "fame"] = runs([0.64, 0.60, 0.62], seeds=[3, 0, 1])  # paired by seed, not by position
    _, ranking, _ = report.choose(groups, [report.CURRENT_DEFAULT, "chosen", "other"])
    text = report.validation_pairs(groups, ranking, "chosen", compare)
    assert f"| {first} | `other` | 4 / 3 | +0.0050 | +0.0000, +0.0100, +0.0100 (0,1,3) |" in text, text
    assert f"| {second} | `{report.CURRENT_DEFAULT}` | 4 / 3 | -0.1050 | -0.1000, -0.0900, -0.1100 (0,1,2) |" in text
    assert "| `chosen` |" not in text  # never against itself


def test_train_args_are_compared_as_options(load_script, tmp_path, monkeypatch):
    report = load_script("benchmarks/results_report.py")
    makefile = tmp_path / "Makefile"
    makefile.write_text("x:\nTRAIN_ARGS ?= --text-init pca --recipe bsarec\n")
    monkeypatch.setattr(report, "MAKEFILE", str(makefile))
    recipe = ["--every-prefix", "--dropout", "0.5"]
    assert report.makefile_matches(["--dropout", "0.5", "--text-init", "pca", "--every-prefix"], recipe)[0]
    assert not report.makefile_matches(["--text-init", "facet", *recipe], recipe)[0]
    assert report.short_flags(["--text-init", "pca", *recipe], recipe) == "--text-init pca --recipe bsarec"


def test_million_runs_show_their_paired_differences(load_script, tmp_path, monkeypatch):
    import json

    report = load_script("benchmarks/results_report.py")
    paired = {"users": 1000, "mean_difference": 0.00721, "standard_error": 0.0006, "ci95": [0.00603, 0.00839],
              "p_two_sided": 3e-33, "users_b_better": 412, "users_a_better": 120}
    run = {"command": "python benchmarks/million_items.py --from-sasrec s.keras", "git": {"commit": "abcdef1234567"},
           "machine": {"cpu": "Some CPU", "cpu_count": 2}, "peak_rss_gb": 5.0,
           "settings": {"items": 1000, "users": 500, "data": "clustered", "model": "fame", "optimizer": "adam",
                        "negatives": 16},
           "stages": {"start_model": {"ndcg_at_10": 0.016}, "train": {"steps": 3, "seconds": 1.0},
                      "evaluate": {"users": 1000, "ndcg_at_10": 0.0232, "hr_at_10": 0.04,
                                   "popularity_ndcg_at_10": 0.016, "random_hr_at_10": 0.01}},
           "paired_ndcg_at_10": {"popularity": paired, "start_model": {**paired, "mean_difference": -0.0003}}}
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "million_items_t.json").write_text(json.dumps(run))
    monkeypatch.setattr(report, "ROOT", str(tmp_path))
    text = report.million_section()
    assert ("popularity +0.0072 (95% interval +0.0060 to +0.0084, p 3e-33; better for 412 users, worse for 120); "
            "the SASRec it started from (NDCG@10 0.0160) -0.0003") in text, text
    # A run written before runs paired their users shows no paired line.
    del run["paired_ndcg_at_10"]
    (tmp_path / "results" / "million_items_t.json").write_text(json.dumps(run))
    assert "Per-user" not in report.million_section()
