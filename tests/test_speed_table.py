"""The benchmark table's pieces that need no timing: the peer's data file, time to target, the table."""

import json

import pytest


def test_the_recbole_atomic_file_keeps_each_users_order(tmp_path, load_script):
    peer = load_script("benchmarks/recbole_peer.py")
    source = tmp_path / "seqs.txt"
    source.write_text("1 5 3 9\n2 3 3\n")
    assert peer.write_atomic_file(str(source), str(tmp_path / "out")) == (2, 3, 5)
    lines = (tmp_path / "out" / "toys" / "toys.inter").read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    assert lines[1:] == ["1\t5\t0", "1\t3\t1", "1\t9\t2", "2\t3\t0", "2\t3\t1"]
    (tmp_path / "bad.txt").write_text("1 2 3\n4 x 5\n")
    with pytest.raises(ValueError, match=r"bad.txt:2: expected"):
        peer.write_atomic_file(str(tmp_path / "bad.txt"), str(tmp_path / "out2"))


def test_time_to_target_and_the_table(load_script):
    table = load_script("benchmarks/speed_table.py")
    history = [{"epoch": 1, "seconds": 30.0, "ndcg@10": 0.04}, {"epoch": 2, "seconds": 55.0, "ndcg@10": 0.061},
               {"epoch": 3, "seconds": 80.0, "ndcg@10": 0.07}]
    assert table.time_to_target(history, 0.06) == (2, 55.0)
    assert table.time_to_target(history, 0.08) == (None, None)
    row = {"backend": "tensorflow", "model": "sasrec", "loss": "full", "seconds_per_epoch": 20.0,
           "sequences_per_second": 970.0, "time_to_target_seconds": 55.0, "target_epoch": 2, "target": 0.06,
           "history": history, "best_validation_ndcg@10": 0.07, "eval_all_users_seconds": 5.0, "peak_rss_gb": 1.5}
    peer = {**row, "backend": "torch", "model": "RecBole SASRec", "time_to_target_seconds": None, "target_epoch": None,
            "best_validation_ndcg@10": 0.03}
    row["machine"] = {"cpu": "AMD EPYC", "platform": "Linux-x", "cpu_count": 2}
    peer["machine"] = dict(row["machine"])
    text = table.format_table({"tf-sasrec-full": row, "recbole-sasrec": peer})
    assert "| tf-sasrec-full | tensorflow | sasrec | full | 20.0 | 970 | 55 s (2) | 5.0 | 1.50 | A |" in text
    assert "Machines: A = AMD EPYC, 2 cores, Linux-x." in text
    assert "time to val NDCG@10 ≥ 0.06 (epoch)" in text
    assert "not in 3 epochs (best 0.0300)" in text
    assert "RecBole SASRec / keras-fame" not in text  # no ratio without both times
    text = table.format_table({"tf-sasrec-full": row, "recbole-sasrec": {**peer, "time_to_target_seconds": 110.0}})
    assert "RecBole SASRec / keras-fame tf-sasrec-full = 2.00x" in text
    # Rows from two machines: tagged apart, and no ratio across them.
    elsewhere = {**peer, "time_to_target_seconds": 110.0, "machine": {"platform": "Linux-y", "cpu_count": 2}}
    text = table.format_table({"tf-sasrec-full": row, "recbole-sasrec": elsewhere})
    assert "| B |" in text and "B = CPU model not recorded, 2 cores, Linux-y" in text
    assert "Seconds compare only between rows of one machine." in text
    assert "RecBole SASRec / keras-fame" not in text
    lower = table.retarget({"tf-sasrec-full": row}, 0.03)["tf-sasrec-full"]
    assert (lower["target_epoch"], lower["time_to_target_seconds"], lower["target"]) == (1, 30.0, 0.03)


def test_every_row_is_a_command_the_row_runner_accepts(load_script):
    table = load_script("benchmarks/speed_table.py")
    parser = table.build_parser()
    for name, (backend, model, loss, options) in table.ROWS.items():
        if backend == "torch":
            continue
        args = parser.parse_args(["one", "--backend", backend, "--model", model, "--loss", loss, *options])
        assert (args.every_prefix, args.mixed_precision) == ("--every-prefix" in options, "--mixed-precision" in options)
    assert {"tf-sasrec-every-prefix", "tf-fame-full-bf16"} <= set(table.ROWS)


def test_a_row_runs_end_to_end_on_small_data(tmp_path, load_script):
    import keras

    from keras_fame.data import write_sequences
    from keras_fame.data.synthetic import planted_facets

    table = load_script("benchmarks/speed_table.py")
    data, _ = planted_facets(num_users=120, max_length=12, seed=1)
    (tmp_path / "toys").mkdir()
    write_sequences(str(tmp_path / "toys" / "Toys_and_Games.txt"), data)
    out = tmp_path / "row.json"
    assert table.main(["one", "--backend", keras.backend.backend(), "--model", "sasrec", "--loss", "full",
                       "--target", "1.0", "--max-epochs", "2", "--data-dir", str(tmp_path), "--every-prefix",
                       "--mixed-precision", "--out", str(out)]) == 0
    row = json.loads(out.read_text())
    assert row["command"].endswith("--out " + str(out)) and "commit" in row["git"] and row["packages"]["keras"]
    assert row["machine"]["cpu_count"] > 0
    assert row["loss"] == "full, every prefix, bf16"
    assert row["train_rows"] == row["train_positions"] > row["train_sequences"] == 120
    assert [entry["epoch"] for entry in row["history"]] == [1, 2]
    assert row["target_epoch"] is None and row["seconds_per_epoch"] > 0


def test_a_rows_output_goes_to_its_log_and_a_failure_prints_the_logs_tail(tmp_path, load_script, capsys):
    import sys

    table = load_script("benchmarks/speed_table.py")
    log = tmp_path / "row.log"
    ok = [sys.executable, "-c", "import sys; print('epoch 1 line'); print('warning', file=sys.stderr)"]
    assert table.run_logged(ok, env=None, log=str(log)) == 0
    assert sorted(log.read_text().splitlines()) == ["epoch 1 line", "warning"]  # stdout and stderr
    assert capsys.readouterr().out == ""  # a row that succeeds stays out of the table's output

    bad = [sys.executable, "-c", "import sys; print('\\n'.join(map(str, range(30)))); sys.exit(3)"]
    assert table.run_logged(bad, env=None, log=str(log), tail=2) == 3
    assert capsys.readouterr().out.splitlines() == ["  | 28", "  | 29"]
