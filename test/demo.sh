#!/bin/sh
# The README's demo: four mails delivered the way an MTA would pipe them in, one ticket
# opened, answered and closed. Run it from any folder: the tickets go to
# DEMO_DIR (default ./demo-tickets, relative to the current folder).
#
#   npm run demo                      (builds first)
#   sh test/demo.sh                   (needs dist/ticket-mail.cjs: npm run build)
#   DEMO_DIR=/tmp/t sh test/demo.sh
set -eu

here=$(dirname -- "$0")
root=$(cd -- "$here/.." && pwd -P)
fixtures="$root/test/fixtures"
cli="$root/dist/ticket-mail.cjs"

DEMO_DIR=${DEMO_DIR:-./demo-tickets}
case $DEMO_DIR in
  -*) DEMO_DIR="./$DEMO_DIR" ;; # never let the folder name look like an option
esac

if [ ! -f "$cli" ]; then
  echo "demo: $cli is missing; run 'npm run build' first (or 'npm run demo')" >&2
  exit 1
fi

# Start afresh, but only ever delete a folder an earlier run of this demo made.
if [ -e "$DEMO_DIR" ] || [ -L "$DEMO_DIR" ]; then
  if [ -d "$DEMO_DIR/.ticket-mail" ]; then
    rm -rf -- "$DEMO_DIR"
  elif [ -d "$DEMO_DIR" ] && [ -z "$(ls -A -- "$DEMO_DIR")" ]; then
    rmdir -- "$DEMO_DIR" # empty: nothing to lose
  else
    echo "demo: $DEMO_DIR exists and is not an earlier demo folder (no .ticket-mail/ in it); not touching it" >&2
    echo "demo: remove it yourself or set DEMO_DIR to another folder" >&2
    exit 1
  fi
fi

# deliver DESCRIPTION FIXTURE RECIPIENT SENDER
deliver() {
  echo "==> $1"
  status=0
  # No mail leaves this machine: with no sendmail to hand it to, ticket-mail keeps what it
  # would send (acknowledgement, notifications, close notice) in its outbox, shown below.
  node "$cli" --dir "$DEMO_DIR" --domain tickets.example --admin max@tickets.example \
    --sendmail /nonexistent/sendmail --recipient "$3" --sender "$4" <"$fixtures/$2" 2>&1 || status=$?
  echo "    exit $status"
  if [ "$status" -ne 0 ]; then
    echo "demo: delivering $2 failed" >&2
    exit "$status"
  fi
}

deliver "alice writes to submit@tickets.example (new ticket)" \
  new-ticket.eml submit@tickets.example alice@customer.example
deliver "alice replies to submit@tickets.example (routed by the [issue1] subject tag)" \
  reply.eml submit@tickets.example alice@customer.example
deliver "max answers via ticket-1@tickets.example (appended to ticket 1)" \
  admin-answer.eml ticket-1@tickets.example max@tickets.example
deliver "alice writes to ticket-1-done@tickets.example (closes ticket 1)" \
  close.eml ticket-1-done@tickets.example alice@customer.example

echo
echo "--- files in $DEMO_DIR"
find "$DEMO_DIR" -type f | sort
echo
echo "--- audit log: $DEMO_DIR/.ticket-mail/log"
cat -- "$DEMO_DIR/.ticket-mail/log"
echo
echo "--- the closed ticket: $DEMO_DIR/archived/1 ($(grep -c '^From ' "$DEMO_DIR/archived/1") messages)"
cat -- "$DEMO_DIR/archived/1"
echo
outbox="$DEMO_DIR/.ticket-mail/outbox"
echo "--- mail ticket-mail would have sent: $outbox ($(grep -c '^From ' "$outbox") messages)"
awk '/^X-Ticket-Mail: outbox /{ print "  " $3 " to " $4; want = 1 }
     want && /^Subject:/ { print "    " $0; want = 0 }' "$outbox"
echo
echo "--- the first of them, the acknowledgement"
awk 'NR > 2 && /^From / { exit } NR > 2' "$outbox"
