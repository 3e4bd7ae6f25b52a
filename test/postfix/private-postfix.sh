#!/bin/bash
# A real Postfix for test/postfix.test.ts: Debian's package downloaded and unpacked (never
# installed: it would replace the machine's Exim), run as a private instance under ROOT that
# listens on 127.0.0.1:PORT only and delivers everything not handled here into ROOT/mail/outbox.
# Nothing under /etc/postfix, /var/spool or /var/mail; no syslog. Needs root.
#
#   private-postfix.sh fetch CACHE        the postfix .deb in CACHE (apt-get download); prints its path
#   private-postfix.sh start ROOT PORT DEB  unpack, write the config, start; waits for the master and the port
#   private-postfix.sh stop ROOT          SIGTERM the master, wait until its process group is gone
#
# ROOT/etc: main.cf and master.cf, regenerated at each start from the base below plus
# ROOT/main.cf.extra (replaces base settings of the same name) and ROOT/master.cf.extra (appended).
# ROOT/bin: postfix, postqueue, postalias, sendmail ... wrappers for this instance. ROOT/log/maillog.
# Environment: PF_PRESTART, a command run once the config is written and before any daemon starts
# (maps must exist before the daemons that read them); PF_MAIL_OWNER, PF_SETGID (made if missing).
# No fixed sleeps: each wait polls a condition until a 30 s deadline.
set -euo pipefail
die() { echo "private-postfix: $*" >&2; exit 1; }
wait_for() { # WHAT COMMAND...
  local what=$1 deadline=$(( $(date +%s) + 30 )); shift
  until "$@" 2>/dev/null; do [ "$(date +%s)" -lt "$deadline" ] || die "timed out waiting for $what"; sleep 0.02; done
}
# A zombie counts as gone: PID 1 in some containers reaps orphans late.
alive() { local st; st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$st" ] && [ "$st" != Z ]; }
master_pid() { sed -n '1s/ //gp' "$1/spool/pid/master.pid" 2>/dev/null; }

cmd=${1:-}; shift || true
case $cmd in
fetch)
  cache=${1:?usage: private-postfix.sh fetch CACHE}
  deb=$(ls "$cache"/postfix_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    mkdir -p "$cache"; tmp=$(mktemp -d); chmod 777 "$tmp"   # apt's _apt user downloads into it
    (cd "$tmp" && apt-get download -q postfix >/dev/null 2>&1) || { rm -rf "$tmp"; die "apt-get download postfix failed (no apt lists? run apt-get update)"; }
    mv "$tmp"/postfix_*.deb "$cache/"; rm -rf "$tmp"
    deb=$(ls "$cache"/postfix_*.deb | head -1)
  fi
  echo "$deb" ;;

start)
  ROOT=${1:?usage: start ROOT PORT DEB}; PORT=${2:?}; DEB=${3:?}
  [ "$(id -u)" = 0 ] || die "must run as root (master starts as root, then runs as its mail owner)"
  mkdir -p "$ROOT"; ROOT=$(cd "$ROOT" && pwd -P)
  PKG=$ROOT/pkg CONF=$ROOT/etc OWNER=${PF_MAIL_OWNER:-tmpfxpost} SGID=${PF_SETGID:-tmpfxdrop}
  export LD_LIBRARY_PATH=$PKG/usr/lib/postfix   # the binaries' RUNPATH is /usr/lib/postfix
  # The daemons and the pipe run as other users: ROOT and every parent must be searchable.
  for d in "$ROOT" $(p=$ROOT; while [ "$p" != / ]; do p=$(dirname "$p"); echo "$p"; done); do
    [ $(( 0$(stat -c %a "$d") & 1 )) = 1 ] || die "$d is not searchable by others: chmod o+x it"
  done
  pid=$(master_pid "$ROOT" || true)
  if [ -n "$pid" ] && alive "$pid"; then die "already running (pid $pid): stop it first"; fi
  getent group "$SGID" >/dev/null || groupadd --system "$SGID"
  getent passwd "$OWNER" >/dev/null || useradd --system --user-group --no-create-home \
    --home-dir /nonexistent --shell /usr/sbin/nologin "$OWNER"

  if [ ! -d "$PKG" ]; then
    dpkg -x "$DEB" "$PKG.tmp" && mv "$PKG.tmp" "$PKG"
    missing=$(ldd "$PKG/usr/lib/postfix/sbin/master" | grep 'not found' || true)
    [ -z "$missing" ] || die "libraries missing for postfix: $missing"
    # Written by the package's postinst, which we never run.
    : > "$PKG/etc/postfix/dynamicmaps.cf"
    # sendmail runs postdrop (and postqueue) with a cleaned environment, without our
    # LD_LIBRARY_PATH: wrappers in their place restore it.
    for c in postdrop postqueue; do
      mv "$PKG/usr/sbin/$c" "$PKG/usr/sbin/$c.real"
      printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s.real "$@"\n' "$LD_LIBRARY_PATH" "$PKG/usr/sbin/$c" > "$PKG/usr/sbin/$c"
      chmod 755 "$PKG/usr/sbin/$c"
    done
  fi
  mkdir -p "$CONF" "$ROOT/spool" "$ROOT/data" "$ROOT/log" "$ROOT/bin" "$ROOT/mail/spool"
  chown "$OWNER:" "$ROOT/data" "$ROOT/log"; chmod 700 "$ROOT/data"
  chown nobody: "$ROOT/mail"            # the outbox is written by virtual(8) as nobody
  chmod 1777 "$ROOT/mail/spool"         # local(8) mailboxes
  for c in postfix postconf postqueue postsuper postalias postmap postcat sendmail; do
    # MAIL_CONFIG, not -C: sendmail refuses -C to a non-root user.
    printf '#!/bin/sh\nLD_LIBRARY_PATH=%s MAIL_CONFIG=%s exec %s/usr/sbin/%s "$@"\n' "$LD_LIBRARY_PATH" "$CONF" "$PKG" "$c" > "$ROOT/bin/$c"
    chmod 755 "$ROOT/bin/$c"
  done

  cat > "$CONF/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $CONF
command_directory = $PKG/usr/sbin
daemon_directory = $PKG/usr/lib/postfix/sbin
shlib_directory = $PKG/usr/lib/postfix
meta_directory = $PKG/etc/postfix
queue_directory = $ROOT/spool
data_directory = $ROOT/data
mail_owner = $OWNER
setgid_group = $SGID
sendmail_path = $ROOT/bin/sendmail
# master cleans its daemons' environment: hand the library path on.
import_environment = MAIL_CONFIG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME LD_LIBRARY_PATH=$LD_LIBRARY_PATH
maillog_file = $ROOT/log/maillog
maillog_file_prefixes = $ROOT/log
myhostname = private-postfix.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_peername_lookup = no
alias_maps =
alias_database =
mail_spool_directory = $ROOT/mail/spool
# Nothing leaves: master.cf has no smtp client, and every domain not handled here goes to
# one mbox, ROOT/mail/outbox.
default_transport = virtual
relay_transport = virtual
virtual_mailbox_domains =
virtual_mailbox_base = $ROOT/mail
virtual_mailbox_maps = static:outbox
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
# Retries only when the test asks (postqueue -f).
queue_run_delay = 1h
minimal_backoff_time = 1h
maximal_backoff_time = 1h
delay_warning_time = 0
EOF
  if [ -f "$ROOT/main.cf.extra" ]; then
    awk 'NR==FNR { if (match($0, /^[a-z0-9_]+[ \t]*=/)) { n=$0; sub(/[ \t]*=.*/, "", n); x[n]=1 } next }
         { n=$0; sub(/[ \t]*=.*/, "", n); if (!(n in x)) print }' "$ROOT/main.cf.extra" "$CONF/main.cf" > "$CONF/main.cf.new"
    cat "$ROOT/main.cf.extra" >> "$CONF/main.cf.new"; mv "$CONF/main.cf.new" "$CONF/main.cf"
  fi
  cat > "$CONF/master.cf" <<EOF
127.0.0.1:$PORT inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
  if [ -f "$ROOT/master.cf.extra" ]; then cat "$ROOT/master.cf.extra" >> "$CONF/master.cf"; fi
  if [ -n "${PF_PRESTART:-}" ]; then sh -c "$PF_PRESTART" || die "PF_PRESTART failed"; fi
  # Postfix re-reads a file changed within the last second, for up to ~2 s: backdate ours.
  touch -d "@$(( $(date +%s) - 2 ))" "$CONF"/*
  # Once the queue exists, skip ~1.5 s of integrity checks (postfix-script's own switch).
  [ ! -d "$ROOT/spool/maildrop" ] || touch "$ROOT/spool/quick-start"
  # Postfix shows errors on stderr only on a terminal; else they are in the maillog.
  "$ROOT/bin/postfix" start >"$ROOT/log/start.out" 2>&1 ||
    die "postfix start failed: $(cat "$ROOT/log/start.out"; tail -5 "$ROOT/log/maillog" 2>/dev/null)"
  # postdrop is not set-gid here (a set-gid binary ignores LD_LIBRARY_PATH), so mail a user
  # submits goes in as in Postfix before set-gid postdrop: maildrop world-writable, sticky.
  chmod 1733 "$ROOT/spool/maildrop"; chmod 755 "$ROOT/spool/public"
  wait_for "the master" eval 'pid=$(master_pid "$ROOT") && alive "$pid"'
  wait_for "127.0.0.1:$PORT" bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" ;;

stop)
  ROOT=$(cd "${1:?usage: stop ROOT}" && pwd -P)
  pid=$(master_pid "$ROOT" || true)
  if [ -z "$pid" ] || ! alive "$pid"; then exit 0; fi
  case $(readlink "/proc/$pid/exe") in "$ROOT"/pkg/*/master) ;; *) die "pid $pid is not this instance's master";; esac
  kill -TERM "$pid"
  # The master leads its own process group: wait for the daemons too.
  wait_for "the master to stop" eval '! alive "$pid" && ! ps -o stat= -g "$pid" | grep -qv "^Z"' ;;

*) die "usage: private-postfix.sh fetch CACHE | start ROOT PORT DEB | stop ROOT" ;;
esac
