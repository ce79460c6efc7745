"""The gRPC door: the server (:mod:`.server`), the ``Analytics`` servicer (:mod:`.servicer`), its
interceptors and status mapping, the messages of the contract, the generated code (:mod:`.proto`,
from ``protos/`` by :mod:`.codegen`) and a typed client (:mod:`.client`)."""
