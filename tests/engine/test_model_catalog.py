"""The model catalog: added models, model cards, the last trained model, change notifications."""

from __future__ import annotations

import gc
import logging

import pytest

from napari_fanet.models import build_model, save_checkpoint


@pytest.fixture
def checkpoints(tmp_path):
    """Two tiny segmentation checkpoints and a QSM one."""
    paths = {}
    for name, model in (("a", "unet-seg"), ("b", "unet-seg"), ("q", "qsmnet")):
        net = build_model(model, features=(8, 8, 8, 8, 16))
        paths[name] = save_checkpoint(tmp_path / f"{name}.pt", net)
    return paths


def test_shipped_models_come_with_their_cards(catalog):
    entries = {e.name: e for e in catalog.available_models("segmentation")}
    assert entries["fanet-seg"].shipped and entries["fanet-seg"].card.name == "fanet-seg.md"
    assert "# Model card: `fanet-seg`" in catalog.card_summary(entries["fanet-seg"])
    assert catalog.card_summary(entries["fanet-seg"], max_lines=2).endswith("\n...")


def test_cards_beside_a_checkpoint_or_given(catalog, checkpoints, tmp_path):
    (tmp_path / "a.md").write_text("# Model card: `a`\n")
    assert catalog.add_model(checkpoints["a"]).card == tmp_path / "a.md"
    entry = catalog.add_model(checkpoints["b"], "b2", card=tmp_path / "a.md")
    assert entry.card == tmp_path / "a.md"
    plain = catalog.add_model(checkpoints["q"])
    assert plain.card is None
    assert catalog.card_summary(plain) == f"q (added qsm model): {plain.path}"


def test_last_trained_is_the_newest_trained_model_of_a_task(catalog, checkpoints):
    assert catalog.last_trained() is None
    catalog.add_model(checkpoints["a"], "first", trained=True)
    catalog.add_model(checkpoints["q"], "qsm", trained=True)
    catalog.add_model(checkpoints["b"], "loaded")  # added, not trained here
    assert catalog.last_trained("segmentation").name == "first"
    assert catalog.last_trained().name == "qsm"
    catalog.add_model(checkpoints["b"], "second", trained=True)
    catalog.add_model(checkpoints["a"], "first", trained=True)  # trained again: newest
    assert catalog.last_trained("segmentation").name == "first"
    checkpoints["a"].unlink()
    assert catalog.last_trained("segmentation").name == "second"  # a deleted file is skipped


def test_subscribers_hear_of_every_added_model(catalog, checkpoints):
    heard = []
    unsubscribe = catalog.subscribe(heard.append)
    entry = catalog.add_model(checkpoints["a"])
    assert heard == [entry]
    unsubscribe()
    unsubscribe()  # twice is harmless
    catalog.add_model(checkpoints["b"])
    assert heard == [entry]


def test_bound_methods_are_held_weakly(catalog, checkpoints):
    class Listener:
        def __init__(self):
            self.heard = []

        def on_added(self, entry):
            self.heard.append(entry.name)

    keep, drop = Listener(), Listener()
    catalog.subscribe(keep.on_added)
    catalog.subscribe(drop.on_added)
    del drop
    gc.collect()
    catalog.add_model(checkpoints["a"])
    assert keep.heard == ["a"] and len(catalog._subscribers) == 1


def test_a_failing_subscriber_does_not_stop_the_others(catalog, checkpoints, caplog):
    heard = []

    def broken(entry):
        raise RuntimeError("widget deleted")

    catalog.subscribe(broken)
    catalog.subscribe(heard.append)
    with caplog.at_level(logging.ERROR, logger="napari_fanet.engine.model_catalog"):
        catalog.add_model(checkpoints["a"])
    assert [e.name for e in heard] == ["a"]
    assert "model catalog subscriber" in caplog.text
