#!/bin/sh
# Install or upgrade mailbot on Debian 12 from this checkout. Run as root; run again after
# `git pull` to upgrade (it changes nothing that is already right, and never overwrites the
# configuration). What it does:
#
#   1. the system user and group `mailbot` (no login shell, home /var/lib/mailbot);
#   2. $PREFIX/venv (default /opt/mailbot/venv), a venv made with the SYSTEM Python, which the
#      mailbot user can run (one made under /root or with pyenv it cannot), and mailbot
#      installed into it from this checkout with the pinned versions of requirements.lock;
#   3. $ETC_DIR/mailbot.toml (default /etc/mailbot) from deploy/mailbot.toml if absent,
#      root:mailbot 0640;
#   4. $STATE_DIR (default /var/lib/mailbot) owned by mailbot, 0750, and everything in it
#      owned by mailbot, so SQLite (database, -wal, -shm) is writable by the service and by
#      Postfix's pipe, which both run as mailbot;
#   5. `mailbot db upgrade` as the mailbot user;
#   6. the systemd units into $UNIT_DIR (default /etc/systemd/system), and a daemon-reload
#      when systemd is running. It enables and starts nothing: edit the configuration first.
#
# PREFIX, ETC_DIR, STATE_DIR, UNIT_DIR, PYTHON and CONSTRAINTS may be set in the environment
# (the tests install into temporary folders this way); the installed units and the new
# configuration file then name those paths. The user is always `mailbot`.
set -eu
umask 022

CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/opt/mailbot}
ETC_DIR=${ETC_DIR:-/etc/mailbot}
STATE_DIR=${STATE_DIR:-/var/lib/mailbot}
UNIT_DIR=${UNIT_DIR:-/etc/systemd/system}
PYTHON=${PYTHON:-/usr/bin/python3}
CONSTRAINTS=${CONSTRAINTS:-$CHECKOUT/requirements.lock}
SERVICE_USER=mailbot
SERVICE_HOME=/var/lib/mailbot
VENV=$PREFIX/venv
CONFIG=$ETC_DIR/mailbot.toml

say() { printf 'install.sh: %s\n' "$*"; }
die() {
	printf 'install.sh: %s\n' "$*" >&2
	exit 1
}

[ "$(id -u)" -eq 0 ] || die "run as root (it creates a user and writes $PREFIX, $ETC_DIR, $STATE_DIR)"
[ -x "$PYTHON" ] || die "no $PYTHON: apt-get install python3 python3-venv"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
	die "mailbot needs Python 3.11 or newer; $PYTHON is $("$PYTHON" -V 2>&1)"
"$PYTHON" -c 'import ensurepip, venv' 2>/dev/null ||
	die "$PYTHON cannot make a venv: apt-get install python3-venv"
[ -f "$CONSTRAINTS" ] || die "no pinned dependencies at $CONSTRAINTS (make lock writes it)"

# 1. The service user. Both Postfix's pipe and the service run as it.
# (Checked again after a failure: another install running at the same moment may have won.)
if ! getent group "$SERVICE_USER" >/dev/null; then
	groupadd --system "$SERVICE_USER" || getent group "$SERVICE_USER" >/dev/null
	say "created group $SERVICE_USER"
fi
if ! getent passwd "$SERVICE_USER" >/dev/null; then
	useradd --system --gid "$SERVICE_USER" --home-dir "$SERVICE_HOME" --no-create-home \
		--shell /usr/sbin/nologin --comment "mailbot service" "$SERVICE_USER" ||
		getent passwd "$SERVICE_USER" >/dev/null
	say "created user $SERVICE_USER"
fi

# 2. The venv, made again when it was made with another Python.
want=$("$PYTHON" -c 'import sys; print(sys.base_prefix, sys.version)')
have=$("$VENV/bin/python" -c 'import sys; print(sys.base_prefix, sys.version)' 2>/dev/null || true)
if [ "$want" != "$have" ]; then
	rm -rf "$VENV"
	install -d -m 0755 "$PREFIX"
	"$PYTHON" -m venv "$VENV"
	say "made $VENV with $PYTHON"
fi
say "installing mailbot from $CHECKOUT with the versions pinned in $CONSTRAINTS"
if ! PIP_DISABLE_PIP_VERSION_CHECK=1 "$VENV/bin/python" -m pip install --quiet --no-input \
	--constraint "$CONSTRAINTS" "$CHECKOUT"; then
	die "pip could not install mailbot (above: why; PyPI must be reachable); run $0 again"
fi
"$VENV/bin/mailbot" --help >/dev/null

# 3. The configuration: never overwritten, but always readable by the service user only.
install -d -o root -g "$SERVICE_USER" -m 0750 "$ETC_DIR"
if [ ! -e "$CONFIG" ]; then
	sed "s|^home = .*|home = \"$STATE_DIR\"|" "$CHECKOUT/deploy/mailbot.toml" >"$CONFIG.new"
	chown root:"$SERVICE_USER" "$CONFIG.new"
	chmod 0640 "$CONFIG.new"
	mv "$CONFIG.new" "$CONFIG"
	say "wrote $CONFIG: edit domain, base_url and relay before starting mailbot"
else
	chown root:"$SERVICE_USER" "$CONFIG"
	chmod 0640 "$CONFIG"
fi

# 4. The home: the database and its -wal/-shm must be the service user's, or SQLite answers
# "attempt to write a readonly database" to whichever process does not own them.
install -d -o "$SERVICE_USER" -g "$SERVICE_USER" -m 0750 "$STATE_DIR"
chown -R "$SERVICE_USER:$SERVICE_USER" "$STATE_DIR"

# 5. The schema, as the service user (so SQLite's files are created as its), with only the
# configuration file: nothing from root's environment or working directory leaks in.
# umask 027 as in the units: files the database creates are not world-readable.
if ! (umask 027 && cd / && runuser -u "$SERVICE_USER" -- env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \
	MAILBOT_CONFIG="$CONFIG" "$VENV/bin/mailbot" db upgrade); then
	die "mailbot db upgrade failed (above: why); fix $CONFIG and run $0 again"
fi

# 6. The units, naming this install's paths.
install -d -m 0755 "$UNIT_DIR"
for unit in mailbot.service mailbot@.service; do
	sed -e "s|/opt/mailbot|$PREFIX|g" -e "s|/var/lib/mailbot|$STATE_DIR|g" \
		"$CHECKOUT/deploy/$unit" >"$UNIT_DIR/$unit.new"
	if [ "$CONFIG" != /etc/mailbot/mailbot.toml ]; then
		sed -i "s|^\[Service\]\$|[Service]\nEnvironment=MAILBOT_CONFIG=$CONFIG|" "$UNIT_DIR/$unit.new"
	fi
	chmod 0644 "$UNIT_DIR/$unit.new"
	mv "$UNIT_DIR/$unit.new" "$UNIT_DIR/$unit"
done
# The test systemd itself uses to tell whether it is the running init.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	say "installed the units; start with: systemctl enable --now mailbot (or restart it)"
else
	say "installed the units into $UNIT_DIR (systemd is not running here: no daemon-reload)"
fi
say "done: $("$VENV/bin/mailbot" --version 2>/dev/null || echo mailbot) in $VENV"
