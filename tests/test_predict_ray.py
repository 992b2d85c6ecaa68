"""nsmc.predict_ray on a local Ray (2 CPUs): the same rows and scores as `python -m nsmc.predict`."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-ray.txt (CI does not)")

from nsmc import predict, predict_ray  # noqa: E402
from nsmc.corpus import read_ratings  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's workers import nsmc from this checkout and put ONNX graphs where the other tests do.
    workers_env = {"PYTHONPATH": str(predict_ray.ROOT),
                   "NSMC_RUNTIME_CACHE": os.environ["NSMC_RUNTIME_CACHE"]}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": workers_env})
    yield
    ray.shutdown()


def test_ray_scores_the_rows_the_single_machine_command_scores(tmp_path, tiny_model_dir, fixtures_dir,
                                                                local_ray):
    docs = read_ratings(fixtures_dir / "ratings_train.txt").documents
    rows = pd.DataFrame({"id": range(3000), "document": [docs[i % len(docs)] for i in range(3000)]})
    rows.loc[7, "document"] = ""  # a blank text: empty scores both ways
    rows.to_parquet(tmp_path / "in.parquet")
    rows.to_csv(tmp_path / "in.csv", index=False)

    predict.main(["--model", str(tiny_model_dir), "--runtime", "torch", str(tmp_path / "in.csv"),
                  str(tmp_path / "one.csv")])
    one = pd.read_csv(tmp_path / "one.csv", keep_default_na=False, dtype={"document": str})
    predict_ray.run(tiny_model_dir, str(tmp_path / "in.parquet"), str(tmp_path / "ray"), runtime="torch",
                    workers=1, cpus_per_worker=1)  # the other CPU reads and writes
    many = pd.read_parquet(tmp_path / "ray").sort_values("id").reset_index(drop=True)

    assert len(many) == len(one) == 3000
    assert many["id"].tolist() == one["id"].tolist()
    assert many["document"].tolist() == one["document"].tolist()
    assert many["label"].tolist() == one["label"].tolist()
    for name in ("negative", "positive"):
        assert np.allclose(pd.to_numeric(many[name]).to_numpy(), pd.to_numeric(one[name]).to_numpy(),
                           atol=2e-6, equal_nan=True)
    assert pd.isna(many.loc[7, "negative"]) and many.loc[7, "label"] == ""
