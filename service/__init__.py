"""The service: the people's door (:mod:`.cli`), the gRPC door (:mod:`.rpc`), the workflows both
doors and scheduled runs call (:mod:`.workflows`), and the serving logic (:mod:`.serving`)."""
