"""The training studio page: settings, start/stop/resume, live curves and attention, the trained model.

The run itself (`vitviz.studio.TrainingRun`) lives in this session's `st.session_state` and
trains on its own thread; this module only draws what the run has reported. The live part
is a fragment that redraws itself every two seconds while the run trains, so the rest of the app
never waits for training. The server's limits (`vitviz.quota`) show here: settings estimated
beyond a run's CPU-seconds are refused, and a visitor finds the server busy when it already
trains as many runs as it allows.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from vitviz import figures, limits, quota, studio, weights
from vitviz.i18n import Message, message_of
from vitviz.ui import state
from vitviz.ui.drawing import show_figure, web_picture
from vitviz.ui.i18n import _, glossed, ngettext, number, number_writer, say
from vitviz.ui.text import plain

RUN_KEY = state.TRAINING_KEY
BUSY_KEY = "studio_busy"  # (why the server said no, the settings to start or None to resume) until it says yes
BYTES_KEY = "studio_download"  # (run id, step, bytes) of the last file offered
UPLOAD_KEY = "studio_upload_seen"
NOTE_KEY = "studio_note"  # a Message, shown (translated) once
STRIP_KEY = "studio_strip"  # the drawn snapshot pictures, redrawn only when they change
SHOWN_SNAPSHOTS = 6
REFRESH_SECONDS = 2.0  # each rerun costs Streamlit a full garbage collection: refresh calmly
CURVE_POINTS = 500  # per training curve; longer runs are thinned for the browser
LEARNING_RATES = (1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2)
MAX_STEPS = 5000


def current_run() -> studio.TrainingRun | None:
    return state.training_run()


def _start(run: studio.TrainingRun, new: studio.Settings | None) -> bool:
    """Start (or resume) `run`; when the server is busy, keep why and what to retry. True if it started."""
    try:
        run.start()
    except quota.ServerBusy as busy:
        st.session_state[BUSY_KEY] = (message_of(busy), new)  # a Message: shown in the language of the moment
        return False
    st.session_state.pop(BUSY_KEY, None)
    if new is not None:
        old = current_run()
        if old is not None:
            old.stop()
        st.session_state[RUN_KEY] = run
        st.session_state.pop(BYTES_KEY, None)
    return True


def _try_again() -> None:
    _refusal, new = st.session_state.get(BUSY_KEY, (None, None))
    if new is not None:
        _start(studio.TrainingRun(new), new)
    elif current_run() is not None:
        _resume()


def _busy() -> None:
    """The server's refusal, with a button that asks again."""
    refusal = st.session_state.get(BUSY_KEY)
    if refusal is None:
        return
    st.warning(say(refusal[0]))
    st.button(_("Try again"), key="studio_try_again", on_click=_try_again, icon=":material/refresh:")


def _limits_caption() -> None:
    """What the server allows, and why: every visitor shares it."""
    runs, cpu = limits.max_training_runs(), limits.training_cpu_seconds()
    if cpu:
        words = ngettext(
            "This server is shared by every visitor: it trains one run at a time and gives each at most {cpu} of "
            "computing, so settings estimated to need more are refused before they start.",
            "This server is shared by every visitor: it trains {count} runs at once and gives each at most {cpu} of "
            "computing, so settings estimated to need more are refused before they start.", runs,
        ).format(count=runs, cpu=say(studio.cpu_seconds_words(cpu)))
    else:
        words = ngettext("This server is shared by every visitor: it trains one run at a time.",
                         "This server is shared by every visitor: it trains {count} runs at once.", runs).format(count=runs)
    st.caption(words + " " + _("A run stops within half a minute of its browser tab closing (or, sometimes, of the "
                               "tab being hidden for minutes: Resume then carries on)."))


# --- settings and controls --------------------------------------------------------------------


def _settings_form(run: studio.TrainingRun | None) -> None:
    kept = run.settings if run is not None else studio.Settings()
    busy = run is not None and run.running
    with st.form("studio_settings", border=True):
        st.markdown("**" + _("Model") + "**")
        size_col, patch_col, width_col, depth_col, heads_col = st.columns(5)
        image_size = size_col.selectbox(_("Image size"), [32, 48, 64], index=[32, 48, 64].index(kept.image_size),
                                 key="studio_image_size", help=_("The generated shapes are drawn at this size."))
        patch = patch_col.selectbox(_("Patch size p"), [4, 8, 16], index=[4, 8, 16].index(kept.patch_size),
                                    key="studio_patch")
        dims = [16, 32, 48, 64, 96, 128, 192, 256]
        dim = width_col.selectbox(_("Width d"), dims, index=dims.index(kept.dim), key="studio_dim")
        depth = depth_col.number_input(_("Layers L"), 1, 8, kept.depth, key="studio_depth")
        heads_options = [1, 2, 3, 4, 6, 8]
        heads = heads_col.selectbox(_("Heads h"), heads_options, index=heads_options.index(kept.heads), key="studio_heads")
        st.markdown("**" + _("Training") + "**")
        steps_col, batch_col, lr_col, seed_col = st.columns(4)
        steps = steps_col.number_input(_("Steps"), 10, MAX_STEPS, kept.steps, step=10, key="studio_steps")
        batches = [16, 32, 64, 128]
        batch = batch_col.selectbox(_("Batch size"), batches, index=batches.index(kept.batch_size), key="studio_batch")
        lr = lr_col.select_slider(_("Peak learning rate"), LEARNING_RATES,
                                  value=kept.lr if kept.lr in LEARNING_RATES else 3e-3, format_func=lambda v, write=number_writer(): write(v, "g"),
                                  key="studio_lr")
        seed = seed_col.number_input(_("Seed"), 0, 1_000_000, kept.seed, key="studio_seed")
        label = _("Start a new run") if run is not None else _("Start training")
        submitted = st.form_submit_button(label, type="primary", disabled=busy, key="studio_start")
        _limits_caption()
    if submitted:
        settings = studio.Settings(image_size=int(image_size), patch_size=int(patch), dim=int(dim), depth=int(depth),
                                   heads=int(heads), steps=int(steps), batch_size=int(batch), lr=float(lr),
                                   seed=int(seed))  # fmt: skip
        st.session_state.pop(BUSY_KEY, None)  # a new request replaces one the server turned down
        problem = settings.problem() or settings.over_budget(limits.training_cpu_seconds())
        if problem:
            st.error(say(problem))
            return
        if _start(studio.TrainingRun(settings), settings):
            st.rerun()


def _stop() -> None:
    run = current_run()
    if run is not None:
        run.stop()


def _resume() -> None:
    run = current_run()
    if run is not None and run.status == "stopped":
        _start(run, None)


def _controls(run: studio.TrainingRun) -> None:
    left, middle, right = st.columns([1, 1, 4])
    left.button(_("Stop"), key="studio_stop", on_click=_stop, disabled=run.status != "running", width="stretch")
    middle.button(_("Resume"), key="studio_resume", on_click=_resume, disabled=run.status != "stopped",
                  width="stretch")
    s = run.settings
    right.caption(_("{depth} layers × {heads} heads, d = {dim}, {size}×{size} images in {patch}×{patch} patches · "
                    "{steps} steps of {batch} images · peak learning rate {lr:g} · seed {seed}").format(
        depth=s.depth, heads=s.heads, dim=s.dim, size=s.image_size, patch=s.patch_size, steps=s.steps,
        batch=s.batch_size, lr=s.lr, seed=s.seed))


# --- the live part ------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = int(round(seconds))
    if seconds >= 60:
        return _("{minutes} min {seconds:02d} s").format(minutes=seconds // 60, seconds=seconds % 60)
    return _("{seconds} s").format(seconds=seconds)


def _progress(run: studio.TrainingRun) -> None:
    total = run.settings.steps
    words = {
        "ready": _("Starting…"), "running": _("Training"), "stopping": _("Stopping after this step…"),
        "stopped": _("Stopped: Resume carries on from here"), "done": _("Finished"),
        "limit": _("Stopped at the server's limit"), "failed": _("Failed"),
    }  # fmt: skip
    text = words[run.status] + " · " + _("step {step} of {total}").format(step=run.step, total=total)
    if run.history:
        text += " · " + _("{rate:.1f} steps/s").format(rate=run.rate())
    if run.running and run.history:
        text += " · " + _("{duration} left").format(duration=_duration(run.seconds_left()))
    if run.allowance.cpu_limit:
        text += " · " + _("{used:.0f} of {limit:g} CPU-seconds used").format(used=run.cpu_seconds,
                                                                              limit=run.allowance.cpu_limit)
    st.progress(min(1.0, run.step / total), text=text)
    if run.finished is not None and run.finished.error:
        st.error(say(run.finished.error))
    if run.finished is not None and run.finished.note:
        st.warning(say(run.finished.note))
    if run.history:
        last = run.history[-1]
        measured = [p for p in run.history if p.eval_loss is not None]
        loss_col, accuracy_col, held_loss_col, held_accuracy_col = st.columns(4)
        loss_col.metric(_("Training loss"), number(last.loss, ".3f"), help=_("Cross-entropy of the latest batch."))
        accuracy_col.metric(_("Training accuracy"), number(last.accuracy, ".0%"), help=_("On the latest batch."))
        if measured:
            at_step = _("At step {step}.").format(step=measured[-1].step)
            held_loss_col.metric(_("Held-out loss"), number(measured[-1].eval_loss, ".3f"), help=at_step)
            held_accuracy_col.metric(_("Held-out accuracy"), number(measured[-1].eval_accuracy, ".0%"),
                     help=_("{count} images the model never trains on, at step {step}.").format(
                         count=run.eval_size, step=measured[-1].step))


def _curve(training: tuple[np.ndarray, np.ndarray], held_out: tuple[np.ndarray, np.ndarray], title: str,
           y_title: str, percent: bool) -> go.Figure:
    fig = go.Figure()
    step, write = _("step"), number_writer()
    for name, (xs, ys), style in (
        (_("training batches"), training, dict(mode="lines", line=dict(width=1, color="#a5b4fc"))),
        (_("held-out images"), held_out, dict(mode="lines+markers", line=dict(width=2, color="#f59e0b"))),
    ):
        # Accuracies are written here, not by plotly, whose ".1%" puts the sign after the number in every language.
        fig.add_scatter(x=xs, y=ys, name=name, **style, customdata=[write(y, ".1%") for y in ys] if percent else None,
                        hovertemplate=step + " %{x}<br>" + ("%{customdata}" if percent else "%{y:.3f}") + "<extra>"
                        + name + "</extra>")
    fig.update_xaxes(title=step, rangemode="tozero")
    fig.update_yaxes(title=y_title, range=[0, 1.02] if percent else None)
    if percent:
        fig.update_yaxes(figures.percent_ticks(1.0, write))
    fig.update_layout(legend=dict(orientation="h", y=1.12, x=1, xanchor="right"))
    return figures.layout(fig, title, height=300)


def _thin(series: tuple[np.ndarray, np.ndarray], limit: int = CURVE_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Every k-th point and always the latest, so a long run stays light to redraw."""
    xs, ys = series
    if len(xs) <= limit:
        return xs, ys
    keep = np.unique(np.append(np.arange(0, len(xs), -(-len(xs) // limit)), len(xs) - 1))
    return xs[keep], ys[keep]


def _curves(run: studio.TrainingRun) -> None:
    if not run.history:
        return
    c = {name: _thin(series) for name, series in run.curves().items()}
    left, right = st.columns(2)
    with left:
        show_figure(_curve(c["train_loss"], c["eval_loss"], _("Loss (cross-entropy)"), _("loss"), False),
                    key="studio_loss")
    with right:
        show_figure(_curve(c["train_accuracy"], c["eval_accuracy"], _("Accuracy"), _("accuracy"), True),
                    key="studio_accuracy")


def _evenly(items: list, count: int) -> list:
    if len(items) <= count:
        return items
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in sorted(set(picks))]


def _snapshots(run: studio.TrainingRun) -> None:
    if not run.snapshots:
        return
    config = run.model.config
    gh, gw = config.grid
    truth = state.class_names(config)[run.probe_label]
    st.subheader(_("Where the probe image's CLS token looks"))
    st.caption(_("A fixed probe picture (a {shape}) goes through the model at regular steps during training. Each "
                 "picture shows how much attention the CLS token pays to each patch, all on one colour scale: "
                 "at the start it spreads evenly; as the model learns, it gathers on the parts that decide the "
                 "class.").format(shape=truth))
    layer_col, head_col, _rest = st.columns([1, 1, 2])
    layer_of, head_of, mean_of_heads = _("Layer {layer} of {depth}"), _("Head {head} of {heads}"), _("Mean of the heads")
    layer = layer_col.selectbox(_("Layer"), list(range(config.depth)), index=config.depth - 1, key="studio_layer",
                        format_func=lambda i: layer_of.format(layer=i + 1, depth=config.depth))
    head = head_col.selectbox(_("Head"), [-1, *range(config.heads)], key="studio_head",
                       format_func=lambda h: mean_of_heads if h < 0 else head_of.format(head=h + 1, heads=config.heads))
    shown = _evenly(run.snapshots, SHOWN_SNAPSHOTS)
    key = (run, tuple(shot.step for shot in shown), layer, head)
    kept = st.session_state.get(STRIP_KEY)
    if kept is None or kept[0][0] is not run or kept[0][1:] != key[1:]:
        maps = []
        for shot in shown:
            rows = shot.cls_attention[layer]  # (h, N)
            row = rows.mean(0) if head < 0 else rows[head]
            maps.append(row[1:].reshape(gh, gw))  # the patches; CLS's attention to itself is left out
        vmax = max(float(m.max()) for m in maps) or 1.0
        # One 0..vmax scale for every snapshot, so they compare; weighted opacity keeps the probe readable.
        kept = (key, [figures.attention_overlay(run.probe_image, cls_map, size=160, vmax=vmax, weighted_opacity=True)
                      for cls_map in maps])
        st.session_state[STRIP_KEY] = kept
    columns = st.columns(SHOWN_SNAPSHOTS)
    for column, shot, picture in zip(columns, shown, kept[1], strict=False):
        column.image(web_picture(picture), width="stretch", caption=_("step {step}").format(step=shot.step)
                     + f" · {truth} {number(shot.probs[run.probe_label], '.0%')}")
    if len(run.snapshots) < 2:
        return
    steps = np.array([s.step for s in run.snapshots])
    spread = np.stack([s.entropy() for s in run.snapshots])  # (snapshots, L)
    layer_name = _("layer {layer}")
    fig = figures.lines({layer_name.format(layer=i + 1): spread[:, i] for i in range(config.depth)}, x=steps,
                        title=_("Spread of the CLS attention, mean of the heads: 1 is even, lower is more focused"),
                        x_title=_("step"), y_title=_("entropy / log N"), height=280)
    fig.update_yaxes(range=[0, 1.05])
    show_figure(fig, key="studio_spread")


def _confusion(run: studio.TrainingRun) -> None:
    finished = run.finished
    if finished is None or finished.confusion is None:
        return
    matrix = finished.confusion
    names = state.class_names(run.model.config)
    st.subheader(_("Confusion matrix"))
    accuracy = np.trace(matrix) / max(1, matrix.sum())
    st.caption(_("{count} held-out images after step {step}: each row is the true shape, each column what the model "
                 "answered, so everything off the diagonal is a mistake ({accuracy:.0%} correct).").format(
        count=matrix.sum(), step=finished.step, accuracy=accuracy))
    predicted, true, images = _("predicted"), _("true"), _("images")
    fig = figures.heatmap(matrix, x_labels=names, y_labels=names, x_title=predicted, y_title=true, centred=False,
                          colorscale="Blues", value_name=images, height=420)
    fig.update_traces(text=matrix, texttemplate="%{text}",
                      hovertemplate=f"{true} %{{y}}<br>{predicted} %{{x}}<br>%{{z}} {images}<extra></extra>")
    show_figure(fig, key="studio_confusion")


def _live(run: studio.TrainingRun) -> None:
    @st.fragment(run_every=REFRESH_SECONDS if run.running else None)
    def live() -> None:
        run = current_run()
        if run is None:
            return
        was_running = run.running
        run.poll()
        _progress(run)
        _curves(run)
        _snapshots(run)
        if was_running and not run.running:
            st.rerun()  # the whole page: buttons, confusion matrix and download follow the finished run

    live()


# --- the trained model ----------------------------------------------------------------------------


def _use_mine() -> None:
    run = current_run()
    if run is not None:
        state.set_session_model(_("my trained model (step {step})").format(step=run.step), run.copy_model())
        st.session_state[NOTE_KEY] = Message("Every step page now shows your model; the built-in model is unchanged.")


def _use_default() -> None:
    state.use_default_model()
    st.session_state[NOTE_KEY] = Message("Every step page shows the built-in model again.")


def _download(run: studio.TrainingRun) -> None:
    if run.running:
        st.caption(_("Stop the run, or let it finish, to download the model."))
        return
    kept = st.session_state.get(BYTES_KEY)
    if kept is None or kept[0] is not run or kept[1] != run.step:
        kept = (run, run.step, weights.to_bytes(run.copy_model()))
        st.session_state[BYTES_KEY] = kept
    st.download_button(_("Download my model (.safetensors)"), kept[2], file_name=f"vitviz-studio-step{run.step}.safetensors",
                       mime="application/octet-stream", key="studio_download_button", icon=":material/download:")


def _upload() -> None:
    upload = st.file_uploader(_("Load a model file saved here (.safetensors)"), type=["safetensors"], key="studio_upload")
    if upload is None:
        return
    marker = f"{upload.name}:{upload.size}:{getattr(upload, 'file_id', '')}"
    if st.session_state.get(UPLOAD_KEY) == marker:
        return
    st.session_state[UPLOAD_KEY] = marker
    try:
        model = weights.load_bytes_model(upload.getvalue())
    except weights.CheckpointError as exc:
        st.error(say(exc))
        return
    state.set_session_model(_("{name} (uploaded)").format(name=upload.name), model)
    st.session_state[NOTE_KEY] = Message("Every step page now shows {name}.", name=plain(upload.name))


def _model_section(run: studio.TrainingRun | None) -> None:
    st.subheader(_("Your model on every page"))
    own = state.MODEL_KEY in st.session_state
    left, right, _rest = st.columns([1, 1, 2])
    left.button(_("Use my model on every page"), key="studio_use", on_click=_use_mine, type="primary",
                disabled=run is None, width="stretch")
    right.button(_("Back to the built-in model"), key="studio_default", on_click=_use_default, disabled=not own,
                 width="stretch")
    note = st.session_state.pop(NOTE_KEY, None)
    if note:
        st.success(say(note))
    st.markdown(_("The step pages show: **{name}**. Your model belongs to this browser tab only: no other visitor sees "
                  "it, and the built-in model never changes.").format(name=plain(state.current_model().title)))
    if run is not None and run.step:
        _download(run)
    _upload()


# --- the page -------------------------------------------------------------------------------------


def show() -> None:
    st.title(_("Training studio"))
    st.markdown(glossed(_(
        "Train a Vision Transformer of your own on the built-in shapes, here and now. Choose its size and how long "
        "to train, then watch the loss fall, the accuracy rise and the attention find the shape. Training runs "
        "in the background on one of the server's cores, so you can keep browsing the steps meanwhile; closing "
        "the tab stops it."
    )))
    run = current_run()
    if run is not None:
        run.poll()
    _settings_form(run)
    _busy()
    if run is None:
        st.info(_("Nothing trained yet. The defaults above take a few minutes; a tiny model (width 32, one layer, "
                  "20 steps) takes seconds."))
    else:
        _controls(run)
        _live(run)
        _confusion(run)
    st.divider()
    _model_section(run)
