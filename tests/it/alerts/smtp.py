# An SMTP server for the alert tests (aiosmtpd): STARTTLS required before anything else, and
# a login (user alerts, the password given) required over TLS. Records every message as one
# JSON line in OUT: sender, recipients, the login used, whether TLS was on, the message.
# Usage: smtp.py OUT PORT CERT KEY PASSWORD; writes "ready" to OUT.ready once it listens.
import json
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

OUT, PORT, CERT, KEY, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == b"alerts"
          and auth_data.password == PASSWORD.encode())
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class Handler:
    async def handle_DATA(self, server, session, envelope):
        with open(OUT, "a", encoding="utf-8") as f:
            f.write(json.dumps({
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "authenticated": bool(session.authenticated),
                "login": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
                "tls": session.ssl is not None,
                "message": envelope.content.decode("utf-8", "replace"),
            }) + "\n")
        return "250 OK"


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(CERT, KEY)
controller = Controller(
    Handler(), hostname="127.0.0.1", port=PORT, tls_context=context,
    require_starttls=True, authenticator=authenticator, auth_require_tls=True,
)
controller.start()
with open(OUT + ".ready", "w") as f:
    f.write("ready")
while True:
    time.sleep(3600)
