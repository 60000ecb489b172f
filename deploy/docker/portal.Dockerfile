# syntax=docker/dockerfile:1.7
# Image of the Panjereh web portal (panjereh-portal): server-rendered pages, its templates,
# styles and font inside the installed package.
# Build from the repository root, which is the build context:
#   docker build -f deploy/docker/portal.Dockerfile -t panjereh/portal:$VERSION .
# The portal has no database (it calls only the gateway's public API) and so no migration
# command.

# ---------------------------------------------------------------- builder
# uv installs exactly this component and its locked dependencies (uv.lock, --locked) into
# /opt/venv as regular, non-editable wheels; nothing else of the workspace comes along.
FROM python:3.11.14-slim-bookworm AS builder

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python -m pip install --no-cache-dir "uv==0.13.9"

WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --package panjereh-portal

# ---------------------------------------------------------------- runtime
# Same base image as the builder, so /opt/venv's interpreter path is valid here. No compiler,
# no uv, no pip: only the interpreter and the virtualenv.
FROM python:3.11.14-slim-bookworm AS runtime

RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --system --gid 10001 panjereh \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin panjereh

# bytecode is compiled at build time (UV_COMPILE_BYTECODE): the root filesystem stays read-only;
# PYTHONSAFEPATH keeps the working directory off sys.path, so nothing beside it can shadow a module
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONSAFEPATH=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    PANJEREH_ENV=prod

COPY --from=builder /opt/venv /opt/venv

USER 10001:10001
WORKDIR /opt/venv
EXPOSE 8080

HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=2)"]

CMD ["uvicorn", "panjereh.portal.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8080", "--no-server-header", "--timeout-graceful-shutdown", "20"]
