# Production image for Rectify: one image, three roles chosen by the command
#   python -m api      (default)  the HTTP API
#   python -m worker              the Temporal worker
#   rectify migrate               apply migrations/*.sql, then exit
# There is no .dockerignore: only the files named below are copied.
FROM python:3.11-slim

# PYTHONPATH puts /app first on sys.path, so every entry point (including the `rectify` console
# script, whose sys.path[0] is /usr/local/bin) imports wiring from /app/wiring and so finds
# /app/migrations next to it, not site-packages/migrations (which does not exist).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app

RUN groupadd --system --gid 10001 rectify \
 && useradd --system --uid 10001 --gid rectify --create-home --shell /usr/sbin/nologin rectify

WORKDIR /app

# Third-party dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

COPY domain/ domain/
COPY workflows/ workflows/
COPY activities/ activities/
COPY worker/ worker/
COPY api/ api/
COPY wiring/ wiring/
COPY ops/ ops/
COPY policies/ policies/
COPY migrations/ migrations/

# The project itself, without dev extras; drop build leftovers and any host bytecode caches.
RUN pip install --no-cache-dir . \
 && rm -rf build ./*.egg-info \
 && find /app -name __pycache__ -type d -prune -exec rm -rf {} +

# Sources stay root-owned and read-only for the runtime user.
USER rectify

EXPOSE 8000
CMD ["python", "-m", "api"]
