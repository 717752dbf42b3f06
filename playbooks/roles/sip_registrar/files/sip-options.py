#!/usr/bin/python3
"""sip-options.py ADDRESS PORT URI: one SIP OPTIONS request for URI to ADDRESS:PORT over UDP (sent again twice when
no answer comes within 1 s); prints the status line of the final answer and exits 0 when it is a 2xx, 1 otherwise,
2 when nothing answered. The sip_registrar role's verify step: standard library only."""

import secrets
import socket
import sys


def main() -> int:
    address, port, uri = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((address, port))
    local, local_port = sock.getsockname()[:2]
    call_id = secrets.token_hex(12)
    request = (
        f"OPTIONS {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local}:{local_port};branch=z9hG4bK{secrets.token_hex(8)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:verify@{local}>;tag={secrets.token_hex(4)}\r\n"
        f"To: <{uri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 OPTIONS\r\n"
        f"Contact: <sip:verify@{local}:{local_port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    sock.settimeout(1.0)
    for _attempt in range(3):
        sock.send(request)
        try:
            while True:
                answer = sock.recv(65535)
                status = answer.split(b"\r\n", 1)[0].decode(errors="replace")
                if f"Call-ID: {call_id}".encode() not in answer or not status.startswith("SIP/2.0 "):
                    continue
                code = status.split(" ")[1]
                if code.startswith("1"):
                    continue
                print(status)
                return 0 if code.startswith("2") else 1
        except TimeoutError:
            continue
        except OSError as exc:  # ICMP port unreachable: nothing listens there
            print(f"no answer from {address}:{port}: {exc}")
            return 2
    print(f"no answer from {address}:{port}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
