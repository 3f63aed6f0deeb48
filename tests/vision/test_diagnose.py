"""The probe's labels are read back from captions; they must agree with the scene's own QA answers."""

from __future__ import annotations

import random

from herd.vision.data import render_scene
from herd.vision.diagnose import scene_labels


def test_scene_labels_match_the_rendered_answers():
    rng = random.Random(0)
    for i in range(50):
        pair = render_scene(rng, 64, i)
        labels = scene_labels(pair.caption)
        qa = dict(pair.qa)
        assert labels[6] == qa["How many shapes are there?"]
        for slot, where in enumerate(("left", "middle", "right")):
            colour, shape = labels[slot], labels[3 + slot]
            if colour == "none":
                assert shape == "none"
                continue
            assert qa[f"What colour is the {shape}?"] == colour
            assert qa[f"What shape is {colour}?"] == shape
            assert qa[f"Where is the {shape}?"] == where
