"""CellFluxError: the one exception type for every failed call to a cellflux server."""
import grpc


class CellFluxError(Exception):
    """A call to the server failed.

    Attributes:
      code:    the gRPC status code (a grpc.StatusCode, e.g. grpc.StatusCode.INVALID_ARGUMENT;
               the proto's header lists what each code means for this service).
      message: the server's message, which names the offending field (or, for transport
               failures such as UNAVAILABLE, gRPC's own description).
      row:     for Client.screen, the 0-based plan row whose request failed; None otherwise.

    str(error) is "CODE: message" (with "plan row N: " in front for a screen row).
    """

    def __init__(self, code, message, row=None):
        self.code = code
        self.message = message
        self.row = row
        super().__init__(self._text())

    @property
    def code_name(self):
        """The code's name, e.g. "NOT_FOUND"."""
        return self.code.name

    def _text(self):
        prefix = "" if self.row is None else f"plan row {self.row}: "
        return f"{prefix}{self.code.name}: {self.message}"

    @classmethod
    def from_rpc_error(cls, error, row=None):
        """Wraps a grpc.RpcError raised by a stub call."""
        code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
        details = error.details() if hasattr(error, "details") else str(error)
        return cls(code, details or "", row=row)
