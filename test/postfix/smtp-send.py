#!/usr/bin/env python3
"""smtp-send.py PORT FROM RCPT... < message

One SMTP session with 127.0.0.1:PORT (never another host). Prints "RCPT <addr> CODE text" for
each recipient, then, when one was accepted and stdin held a message, "QUEUED <queue id>" from
the reply to DATA. With nothing on stdin it quits after the RCPTs (a recipient check only)."""
import re, smtplib, sys

port, sender, recipients = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
message = sys.stdin.buffer.read()
smtp = smtplib.SMTP('127.0.0.1', port, local_hostname='client.test', timeout=30)
smtp.ehlo()
code, text = smtp.mail(sender)
if code != 250:
    sys.exit(f'MAIL FROM: {code} {text.decode()}')
accepted = 0
for recipient in recipients:
    code, text = smtp.rcpt(recipient)
    print(f'RCPT {recipient} {code} {text.decode()}')
    accepted += code == 250
if accepted and message:
    code, text = smtp.data(message)
    queued = re.search(r'queued as (\S+)', text.decode())
    print(f'QUEUED {queued.group(1)}' if code == 250 and queued else f'DATA {code} {text.decode()}')
smtp.quit()
