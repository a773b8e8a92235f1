"""The attention explorer in AppTest: it renders, and only occlusion runs the model again."""

from __future__ import annotations

from conftest import fresh_app, open_page, problems, wait_for_background_work

from vitviz import weights

EXPLORER = "pages/explorer.py"


def test_the_explorer_renders_every_view(forward_passes):
    at = open_page(fresh_app(), EXPLORER)
    assert not problems(at), problems(at)
    assert at.title[0].value == "Attention explorer"
    labels = [t.label for t in at.tabs]
    assert labels == ["All heads", "Layers × heads", "Attribution", "Occlusion", "Paper Fig. 7",
                      "Faithfulness", "Token norms"]
    assert [bool(t.children) for t in at.tabs] == [True] + [False] * 6  # only the open tab is drawn
    for label in labels[1:]:
        at.session_state["keep_explorer_tab"] = label  # what a click on the tab keeps
        at.run()
        assert not problems(at), (label, problems(at))
        assert [t.label for t in at.tabs if t.children] == [label]
        if label == "Paper Fig. 7":
            assert len(at.get("plotly_chart")) >= 1  # the attention distances


def test_switching_layer_head_and_query_does_not_rerun_the_model(forward_passes):
    at = open_page(fresh_app(), EXPLORER)
    at.session_state["keep_explorer_tab"] = "Attribution"  # its gradients are computed once, on the first visit
    at.run()
    wait_for_background_work()  # Fig. 7's average over many images runs once per model, on its own thread
    settled = len(forward_passes)
    assert settled >= 1
    at.sidebar.selectbox(key="layer").set_value(2).run()
    at.sidebar.selectbox(key="explorer_head").set_value(1).run()
    at.sidebar.selectbox(key="explorer_head").set_value("all heads: max").run()
    at.sidebar.select_slider(key="opacity").set_value(0.3).run()
    at.session_state["keep_query"] = 5  # what a click on patch 4 stores
    at.run()
    at.selectbox(key="rollout_fusion").set_value("min").run()
    assert not problems(at), problems(at)
    assert "patch 4" in " ".join(m.value for m in at.markdown)
    assert len(forward_passes) == settled


def test_occlusion_reruns_the_model_and_changes_the_prediction(forward_passes):
    at = open_page(fresh_app(), EXPLORER)
    wait_for_background_work()
    settled = len(forward_passes)
    n = weights.load_default().config.num_patches
    at.session_state["keep_explorer_tab"] = "Occlusion"
    at.session_state["keep_occluded"] = tuple(range(n))  # hide everything
    at.run()
    assert not problems(at), problems(at)
    assert len(forward_passes) == settled + 1
    text = " ".join(m.value for m in at.markdown)
    assert f"**{n}** patches hidden" in text
