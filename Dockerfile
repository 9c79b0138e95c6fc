# syntax=docker/dockerfile:1
# One image for every server-side command (api, worker, migrate); compose
# picks the command. Kafka and ClickHouse run in their own containers, so
# nothing here needs Java: the local broker launcher (`run`) is not for images.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ANALYTICS_HTTP_HOST=0.0.0.0

# A fixed numeric id, so runtimes that only accept non-root by uid (for
# example Kubernetes runAsNonRoot) can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 analytics \
    && useradd --system --uid 10001 --gid analytics --create-home \
        --home-dir /home/analytics --shell /usr/sbin/nologin analytics

WORKDIR /src

# The dependencies (chDB and pyarrow among them) take most of the build and
# change far less often than the code. Installing them against an empty
# stand-in package keeps that layer cached across code edits.
COPY pyproject.toml README.md ./
RUN mkdir gateway_analytics \
    && touch gateway_analytics/__init__.py \
    && pip install --no-cache-dir . \
    && pip uninstall --yes gateway-analytics \
    && rm -rf gateway_analytics build ./*.egg-info

COPY gateway_analytics ./gateway_analytics
# Not editable: the SQL migrations and JSON Schema files must come from the
# installed package data, exactly as in a wheel. The source tree is removed
# so nothing at run time can import it instead of the installed copy.
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf /src

# The home folder is writable, so the relative default ANALYTICS_DATA_DIR
# ("data") still works when the image runs outside compose.
WORKDIR /home/analytics
USER 10001:10001

EXPOSE 8080
ENTRYPOINT ["gateway-analytics"]
CMD ["api"]
