"""The step registry: the guide's steps in order, with the project's own words for each.

Rendering lives in `vitviz.ui.render` (the only place that imports Streamlit); this
module is plain data so that tests and the story page can walk the steps in order.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    key: str  # "0" … "14", "10.1" … "10.12"
    title: str
    section: str
    text: str  # a few sentences, written for vitviz
    formula: str | None = None  # LaTeX, shown with st.latex
    shape: str = ""  # the tensor's shape in symbols, filled with values by the page

    @property
    def label(self) -> str:
        return f"{self.key} · {self.title}"

    @property
    def slug(self) -> str:
        return "step_" + self.key.replace(".", "_")


DATA, TOKENS, ENCODER, OUTPUT, TRAINING = (
    "Data",
    "Patches and tokens",
    "Inside one encoder layer",
    "Output",
    "Training",
)

STEPS: tuple[Step, ...] = (
    Step("0", "The data", DATA,
         "A ViT learns from examples: images paired with the class a person gave them. The built-in model "
         "learned from generated pictures of eight shapes, drawn in random colours, sizes, angles and places "
         "on noisy backgrounds. Below is a fresh batch from the same generator, with the labels it was drawn with.",
         shape="(H, W, c)"),
    Step("1", "One image", DATA,
         "From here on we follow a single image, a batch of one. The model never sees your original file: it "
         "sees a centre crop resized to its input size, with each channel shifted and scaled by the mean and "
         "standard deviation it was trained with.",
         formula=r"x' = \frac{x/255 - \mu_c}{\sigma_c}", shape="(1, c, H, W)"),
    Step("2", "Set the label aside", DATA,
         "During training every image comes with its label, but nothing in the forward pass uses it. The label "
         "returns only at the very end, when the loss compares it with the prediction (step 14).",
         shape="(c, H, W)"),
    Step("3", "Cut into patches", TOKENS,
         "The image is cut into a grid of square, non-overlapping p×p patches. Each patch will become one token, "
         "the way a word becomes one token in a language model.",
         formula=r"n = \frac{H\,W}{p^2}", shape="(n, p, p, c)"),
    Step("4", "Flatten each patch", TOKENS,
         "Each patch is unrolled into one long row of numbers: every pixel's red, green and blue values in turn, "
         "left to right, top to bottom. Stacking the rows gives an n×p' matrix.",
         formula=r"p' = p^2 c", shape="(n, p')"),
    Step("5", "Embed one patch", TOKENS,
         "A single learned matrix E maps every flattened patch to a d-dimensional vector. Each of E's d columns is "
         "a filter the size of a patch: the embedding's entries say how strongly the patch matches each filter.",
         formula=r"z_i = x_i E + b,\quad E \in \mathbb{R}^{p' \times d}", shape="(1, d)"),
    Step("6", "Embed all patches", TOKENS,
         "The same E is applied to every patch at once, turning the n×p' patch matrix into an n×d matrix of "
         "embeddings. Patches that look alike land close together.",
         formula=r"Z = X E + b", shape="(n, d)"),
    Step("7", "Add the CLS token", TOKENS,
         "One extra learned vector, the classification token, is put in front of the patch embeddings. It is the "
         "same vector for every image; its job is to gather what the model needs to decide the class.",
         formula=r"Z_0 = [\,x_\text{cls};\ Z\,]", shape="(n+1, d)"),
    Step("8", "Add position embeddings", TOKENS,
         "Attention by itself does not know where a token came from. A learned vector per position is added to "
         "every token, so the same patch content at two places gives two different tokens.",
         formula=r"Z_0 \leftarrow Z_0 + E_\text{pos},\quad E_\text{pos} \in \mathbb{R}^{(n+1)\times d}", shape="(n+1, d)"),
    Step("9", "The transformer's input", TOKENS,
         "This (n+1)×d matrix is everything the encoder will see. Each of its blocks keeps this shape: tokens "
         "go in, the same number of tokens of the same width come out.",
         shape="(n+1, d)"),
    Step("10.1", "Q, K and V", ENCODER,
         "The block first normalises each token (LayerNorm), then one linear layer makes three vectors per token: "
         "a query, a key and a value. They are cut into h heads of width d_h, and each head works on its own slice.",
         formula=r"[\,Q\ |\ K\ |\ V\,] = \mathrm{LN}(X)\,W_{qkv} + b_{qkv}", shape="(h, n+1, d_h)"),
    Step("10.2", "Attention scores", ENCODER,
         "Every query is compared with every key by a dot product, scaled by the square root of the head width so "
         "the numbers stay in a range the softmax can use. Row i says how well token i's question fits each token.",
         formula=r"A = \frac{Q K^\top}{\sqrt{d_h}}", shape="(h, n+1, n+1)"),
    Step("10.3", "Softmax", ENCODER,
         "Each row of scores is turned into weights that are positive and add up to one. Large scores take most "
         "of the weight; small ones fade towards zero.",
         formula=r"P_{ij} = \frac{e^{A_{ij}}}{\sum_k e^{A_{ik}}}", shape="(h, n+1, n+1)"),
    Step("10.4", "One token's context", ENCODER,
         "Take one query's row of weights and mix the value vectors with them. The result is that token's new "
         "context: mostly made of the values of the tokens it attends to.",
         formula=r"c_i = \sum_j P_{ij}\, v_j", shape="(d_h,)"),
    Step("10.5", "Every token's context", ENCODER,
         "Doing the same for every row at once is one matrix product. That finishes one head: one context vector "
         "per token, CLS included.",
         formula=r"C = P\,V", shape="(n+1, d_h)"),
    Step("10.6", "Many heads", ENCODER,
         "All h heads do steps 10.2 to 10.5 in parallel, each with its own slice of Q, K and V. Different heads "
         "learn to look for different things, and their attention maps show it.",
         formula=r"C_j = \mathrm{softmax}\!\left(\frac{Q_j K_j^\top}{\sqrt{d_h}}\right) V_j,\quad j = 1..h",
         shape="(h, n+1, d_h)"),
    Step("10.7", "Concatenate and project", ENCODER,
         "The heads' contexts are laid side by side, giving back a d-wide vector per token, and one more linear "
         "layer W_o mixes what the heads found.",
         formula=r"O = [\,C_1\ |\ \dots\ |\ C_h\,]\,W_o + b_o", shape="(n+1, d)"),
    Step("10.8", "The attention output", ENCODER,
         "Attention has produced exactly as many vectors as went in, each as wide as before, but every one now "
         "carries information from the tokens it attended to.",
         shape="(n+1, d)"),
    Step("10.9", "Residual connection", ENCODER,
         "The block's input is added back to the attention output. The attention only has to learn a change to "
         "each token, and signals and gradients have a direct path through the network.",
         formula=r"X' = X + O", shape="(n+1, d)"),
    Step("10.10", "After the residual", ENCODER,
         "The sum has the same shape again. Comparing it with the input shows how far attention moved each token.",
         shape="(n+1, d)"),
    Step("10.11", "The MLP", ENCODER,
         "Each token now goes on its own through a small two-layer network: normalise, widen to the hidden size, "
         "apply GELU, narrow back to d. This is where most of the block's parameters are.",
         formula=r"M = \mathrm{GELU}(\mathrm{LN}(X') W_1 + b_1)\, W_2 + b_2", shape="(n+1, mlp)"),
    Step("10.12", "The block's output", ENCODER,
         "A second residual adds the MLP's output to its input. The block ends with the same (n+1)×d shape it "
         "started with, ready for the next block.",
         formula=r"Y = X' + M", shape="(n+1, d)"),
    Step("11", "Repeat the block", OUTPUT,
         "The model stacks L such blocks, each with its own weights. Watching the CLS token from block to block "
         "shows the prediction taking shape.",
         formula=r"X_{l+1} = \mathrm{Block}_l(X_l),\quad l = 0..L-1", shape="(L, n+1, d)"),
    Step("12", "The CLS output", OUTPUT,
         "After the last block and a final LayerNorm, only the CLS token's vector is kept. The patch tokens have "
         "done their job by feeding it through attention.",
         formula=r"y = \mathrm{LN}(X_L)_0", shape="(d,)"),
    Step("13", "Class probabilities", OUTPUT,
         "A linear layer turns the CLS vector into one score per class (the logits), and a softmax turns the "
         "scores into probabilities.",
         formula=r"\hat p = \mathrm{softmax}(y\,W_\text{head} + b_\text{head})", shape="(k,)"),
    Step("14", "Training", TRAINING,
         "Training compares the probabilities with the true label through the cross-entropy loss, and "
         "backpropagation tells every weight, and every input pixel, which way to move to lower it.",
         formula=r"\mathcal{L} = -\log \hat p_y", shape="()"),
)

BY_KEY = {step.key: step for step in STEPS}
SECTIONS: tuple[str, ...] = (DATA, TOKENS, ENCODER, OUTPUT, TRAINING)


def neighbours(key: str) -> tuple[Step | None, Step | None]:
    """The steps before and after `key`, in guide order."""
    index = [s.key for s in STEPS].index(key)
    before = STEPS[index - 1] if index > 0 else None
    after = STEPS[index + 1] if index + 1 < len(STEPS) else None
    return before, after
