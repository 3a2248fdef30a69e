"""Request errors with their gRPC status code and a message naming the bad field."""

from __future__ import annotations

import grpc

from steadyrank.core.errors import SteadyRankError


class ServiceError(SteadyRankError):
    """A request that cannot be answered; the server turns it into a gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


ECHO_LIMIT = 64  # characters of a client's string repeated in a message


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """A client-supplied string for an error message, cut to ``limit`` characters (a status
    message must stay far under gRPC's metadata size limit)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def invalid(message: str) -> ServiceError:
    """INVALID_ARGUMENT: the request itself is wrong."""
    return ServiceError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServiceError:
    """NOT_FOUND: the model or version is not being served."""
    return ServiceError(grpc.StatusCode.NOT_FOUND, message)


def unimplemented(message: str) -> ServiceError:
    """UNIMPLEMENTED: the method exists in the API but not for these models."""
    return ServiceError(grpc.StatusCode.UNIMPLEMENTED, message)


def exhausted(message: str) -> ServiceError:
    """RESOURCE_EXHAUSTED: the server is at capacity; the client should back off and retry."""
    return ServiceError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def deadline(message: str) -> ServiceError:
    """DEADLINE_EXCEEDED: the client's deadline passed before the answer was ready."""
    return ServiceError(grpc.StatusCode.DEADLINE_EXCEEDED, message)


def unavailable(message: str) -> ServiceError:
    """UNAVAILABLE: the server is shutting down."""
    return ServiceError(grpc.StatusCode.UNAVAILABLE, message)
