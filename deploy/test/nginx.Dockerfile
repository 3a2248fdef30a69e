# Stand-in for the official nginx image where Docker Hub cannot be reached: Debian bookworm's
# nginx (1.22, with the gRPC proxy module) on the stand-in base. docker-compose.yml gives the
# command and mounts deploy/lb/nginx.conf, as with the official image.
ARG BASE_IMAGE=steadyrank-standin/python:3.11-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/*
EXPOSE 8500
CMD ["nginx", "-g", "daemon off;"]
