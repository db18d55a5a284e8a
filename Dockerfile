# The eligibility service. durable-rules builds from source (gcc) and needs Python 3.11 or 3.12.
FROM python:3.11-slim AS build
# The compiler only builds wheels in this stage and is not shipped, so its exact version is not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY service ./service
COPY clients ./clients
COPY population ./population
COPY policies ./policies
# The same install as the README's set-up (make), without the test extras.
RUN python -m venv /opt/venv \
 && CPPFLAGS=-O2 /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
RUN useradd --system --uid 10001 --no-create-home subsidy
USER 10001
EXPOSE 50051 9464
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-m", "service.healthcheck", "--address", "127.0.0.1:50051"]
CMD ["python", "-m", "service"]
