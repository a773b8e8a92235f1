"""Untrusted text made safe to show: class names from a checkpoint, file names, model names.

Streamlit renders Markdown in st.markdown, st.caption, st.success and friends, and plotly renders
a few HTML tags in labels, so a label like "[prize](https://…)" or "<a href=…>" would become a
link, and "![x](https://…)" would fetch an image. Everything such text contains is shown as is.
"""

from __future__ import annotations

import re

# Every ASCII punctuation mark may be escaped in Markdown; escaping ":" and "." also keeps a bare
# "https://…" or "www.…" from being turned into a link.
_MARKDOWN_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")


def plain(text: object) -> str:
    """`text` for Markdown, shown character for character."""
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", str(text)).replace("\n", " ")
