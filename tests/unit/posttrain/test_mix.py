"""The SFT category mix [P §4.2.2, Table 7]: categories from sources, resampling toward a target, the report."""

from __future__ import annotations

import pytest

from herd.posttrain.mix import TABLE7_SHARES, MixConfig, category_of, resample, shares


def test_table7_shares_sum_to_100():
    assert sum(TABLE7_SHARES.values()) == pytest.approx(100.0, abs=0.01)


def test_category_from_field_then_source():
    assert category_of({"category": "code", "source": "chatterbot"}) == "code"
    assert category_of({"source": "arithmetic"}) == "reasoning_tools"
    assert category_of({"source": "rs"}) == "general"


def test_resample_hits_the_target_among_present_categories():
    items = list(range(1000))
    cats = ["general"] * 900 + ["code"] * 100  # 90/10 as gathered
    out, report = resample(items, cats, MixConfig(target={"general": 60, "code": 40, "long_context": 5}))
    # long_context is absent: its share is dropped and 60:40 renormalised over the 1000 dialogs.
    assert len(out) == 1000 and report["realised"] == {"code": 40.0, "general": 60.0}
    assert report["before"] == {"code": 10.0, "general": 90.0}
    code = [i for i in out if i >= 900]
    assert len(set(code)) == 100 and len(code) == 400  # every code dialog used, each 4 times
    general = [i for i in out if i < 900]
    assert len(set(general)) == 600  # drawn without repetition


def test_resample_caps_repetition_and_reports_the_shortfall():
    cats = ["general"] * 95 + ["code"] * 5
    out, report = resample(list(range(100)), cats, MixConfig(target={"general": 50, "code": 50}, max_repeat=2))
    assert report["short"] == {"code": 40} and sum(1 for i in out if i >= 95) == 10


def test_resample_off_keeps_the_data_and_reports_it():
    out, report = resample([1, 2, 3], ["code", "general", "general"], MixConfig(resample=False))
    assert out == [1, 2, 3] and report["realised"] == shares(["code", "general", "general"])


def test_a_category_without_a_target_share_is_an_error():
    with pytest.raises(ValueError, match="poetry"):
        resample([1, 2], ["general", "poetry"], MixConfig())
