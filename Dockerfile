# The cspulse worker image. durable-rules builds from source (gcc), so a builder stage
# makes the wheels and the runtime stage installs them with no compiler.
FROM python:3.11.11-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc g++ make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY cspulse cspulse
COPY streams streams
COPY rules rules
COPY store store
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[postgres]'

FROM python:3.11.11-slim-bookworm
RUN useradd --create-home --uid 10001 cspulse
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links=/wheels 'cspulse[postgres]' && rm -rf /wheels
USER cspulse
WORKDIR /home/cspulse
EXPOSE 6066
CMD ["cspulse", "worker", "-l", "info"]
