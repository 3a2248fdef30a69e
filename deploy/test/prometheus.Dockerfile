# Stand-in for prom/prometheus where Docker Hub cannot be reached: Debian's prometheus
# package on the stand-in base, laid out like the official image (config in
# /etc/prometheus, data in /prometheus, runs as nobody, flags given as the command).
ARG BASE_IMAGE=steadyrank-standin/python:3.11-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /prometheus && chown nobody:nogroup /prometheus
USER nobody
EXPOSE 9090
WORKDIR /prometheus
ENTRYPOINT ["/usr/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
