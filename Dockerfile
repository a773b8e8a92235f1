# vitviz for a class: one server process that every visitor shares (docs/DEPLOY.md).
#   docker build -t vitviz .
#   docker run -p 8501:8501 vitviz
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The CPU build of torch first, from PyTorch's CPU wheel index (PyPI's torch pulls the CUDA
# libraries); the same pin as requirements.txt, which then finds torch already installed.
COPY requirements.txt /tmp/requirements.txt
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# The app runs as an unprivileged user; its files belong to root, so it cannot change them.
# It writes only to the Hugging Face cache (Hub presets): HF_HOME, made here so that a volume mounted
# there starts out owned by that user.
ENV HF_HOME=/home/vitviz/.cache/huggingface
RUN useradd --create-home --uid 1000 vitviz \
 && mkdir -p "$HF_HOME" \
 && chown -R vitviz:vitviz /home/vitviz/.cache
WORKDIR /app
COPY requirements.txt app.py ./
COPY vitviz/ vitviz/
COPY pages/ pages/
COPY assets/ assets/
COPY .streamlit/config.toml .streamlit/config.toml
ENV PYTHONPATH=/app
USER vitviz

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://localhost:8501/_stcore/health', timeout=4).read() != b'ok')"
CMD ["streamlit", "run", "app.py", "--server.address", "0.0.0.0", "--server.port", "8501"]
