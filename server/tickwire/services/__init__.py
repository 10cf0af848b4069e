"""gRPC servicers: validate -> proto to arrays -> route -> engine -> proto.

Every module here that defines ``SERVICE`` (a :class:`~tickwire.services.runtime.ServiceSpec`)
is picked up by the server at start-up: adding an engine means adding its
proto, its engine module and its servicer module, nothing else.
"""
