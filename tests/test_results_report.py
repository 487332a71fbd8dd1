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
    winner, ranking = report.choose(groups, configurations)
    assert winner == "better_everywhere"  # above the default on both datasets; test numbers never looked at
    assert [row[3] for row in ranking[report.DATASETS[0]]] == ["better_once", "better_everywhere", default]
    del groups[report.DATASETS[0], "better_everywhere", "fame"]
    assert report.choose(groups, configurations)[0] is None


def test_train_args_are_compared_as_options(load_script, tmp_path, monkeypatch):
    report = load_script("benchmarks/results_report.py")
    makefile = tmp_path / "Makefile"
    makefile.write_text("x:\nTRAIN_ARGS ?= --text-init pca --recipe bsarec\n")
    monkeypatch.setattr(report, "MAKEFILE", str(makefile))
    recipe = ["--every-prefix", "--dropout", "0.5"]
    assert report.makefile_matches(["--dropout", "0.5", "--text-init", "pca", "--every-prefix"], recipe)[0]
    assert not report.makefile_matches(["--text-init", "facet", *recipe], recipe)[0]
    assert report.short_flags(["--text-init", "pca", *recipe], recipe) == "--text-init pca --recipe bsarec"
