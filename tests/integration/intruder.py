"""What another user of the login node tries against a cluster that is not theirs."""

#: Run with the nodes' Python and a scheduler's address: what a Dask client
#: without the cluster's certificate gets, over plain TCP and over TLS.
CONNECT_WITHOUT_THE_CERTIFICATE = """
import socket, ssl, sys
from distributed import Client
address = sys.argv[1]
try:
    Client(address.replace("tls://", "tcp://"), timeout="5s").close()
    print("dask client over TCP connected")
except OSError as e:
    print("dask client over TCP refused")
host, port = address.removeprefix("tls://").rsplit(":", 1)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
try:
    with socket.create_connection((host, int(port)), timeout=5) as raw, context.wrap_socket(raw) as tls:
        tls.sendall(b"hello")
        print("TLS without a certificate", "refused" if tls.recv(1) == b"" else "answered")
except OSError as e:
    print("TLS without a certificate refused")
"""

REFUSED = ["dask client over TCP refused", "TLS without a certificate refused"]

#: Run by the cluster's owner with the paths a job script names: a Dask client
#: made from a worker's credentials, as anyone who can read them could.
CONNECT_AS_A_WORKER = """
import os, sys
from distributed import Client
from distributed.security import Security
address, ca, cert, key = sys.argv[1:]
worker = Security(require_encryption=True, tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key)
try:
    with Client(address, security=worker, timeout="20s") as client:
        client.run_on_scheduler(os.getpid)
    print("client with a worker's credentials ran code on the scheduler")
except Exception as e:
    print("client with a worker's credentials refused")
"""
