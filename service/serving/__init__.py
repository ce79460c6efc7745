"""The serving logic, independent of gRPC: the active model and its indexes (:mod:`.registry`,
:mod:`.index`), and the answers (:mod:`.similar`, :mod:`.clustering`, :mod:`.links`)."""
