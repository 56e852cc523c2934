# shellcheck shell=bash
# Sourced by lab/lab.sh: what on this machine stands in the lab's way, and whose it is.
#
# The lab needs the DC's ports on $DC_IP, 127.0.0.1:$BACKEND_PORT, and winbind's
# socket directory, which is compiled into Samba (/run/samba/winbindd) and so shared
# with any winbindd of the machine's own. A process in the way is the lab's own only
# if it descends from a process the lab's pid files name; everything else belongs to
# someone else (on a domain member, winbindd is how domain users log on at all) and
# is never stopped unless the operator says so.

# The lab's own Samba needs these (Kerberos, RPC endpoint mapper, NetBIOS, LDAP,
# SMB, kpasswd, LDAPS, global catalog).
LAB_TCP_PORTS="88 135 139 389 445 464 636 3268 3269"
LAB_UDP_PORTS="88 137 138 389 464"
# Names of the Samba and MIT Kerberos daemons (systemd units smbd, nmbd, winbind,
# samba-ad-dc, krb5-kdc, krb5-admin-server).
LAB_DAEMONS="winbindd smbd nmbd samba krb5kdc kadmind"

# /proc/PID/stat after the command name, which may hold spaces and parentheses.
proc_stat() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; printf '%s\n' "${s##*) }"; }
# A zombie is gone for every purpose here (a test's child stays one until reaped).
alive() { local s; s=$(proc_stat "$1") || return 1; [ "${s%% *}" != Z ]; }
parent_of() { local s; s=$(proc_stat "$1") || return 1; s=${s#* }; echo "${s%% *}"; }

# The pid a pid file names, if that process is still the program the lab started
# there: a pid file left from before a reboot may name someone else's process.
own_pid() { # pid-file program
  local pid exe
  pid=$(cat "$1" 2>/dev/null) || return 0
  case "$pid" in '' | *[!0-9]*) return 0 ;; esac
  exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 0
  exe=${exe% (deleted)}
  [ "${exe##*/}" = "$2" ] && alive "$pid" && echo "$pid"
  return 0
}

lab_roots() {
  own_pid "$LAB/samba.pid" samba
  own_pid "$LAB/apache/run/httpd.pid" apache2
}

# Is PID one of the lab's processes, or a child of one? ROOTS: lab_roots' output.
is_lab_process() { # pid roots
  local pid=$1 roots=" ${2//$'\n'/ } "
  while [ -n "$pid" ] && [ "$pid" -gt 1 ]; do
    case "$roots" in *" $pid "*) return 0 ;; esac
    pid=$(parent_of "$pid") || return 1
  done
  return 1
}

is_daemon() { case " $LAB_DAEMONS " in *" $1 "*) return 0 ;; esac; return 1; }

# The systemd unit a process runs in, if it is one of the services above: the only
# units the take-over stops by name (never, say, the unit a CI runner itself runs in).
unit_of() {
  local unit
  unit=$(sed -n 's|^0::.*/\([^/]*\.service\)$|\1|p; s|^[0-9]*:name=systemd:.*/\([^/]*\.service\)$|\1|p' "/proc/$1/cgroup" 2>/dev/null | head -1)
  case "$unit" in
    smbd.service | nmbd.service | winbind.service | samba-ad-dc.service | krb5-kdc.service | \
      krb5-admin-server.service | apache2.service) echo "$unit" ;;
  esac
}

describe() { # pid
  local comm cmd unit
  comm=$(cat "/proc/$1/comm" 2>/dev/null)
  cmd=$(tr '\0\n' '  ' <"/proc/$1/cmdline" 2>/dev/null | cut -c1-100 | sed 's/ *$//')
  unit=$(unit_of "$1")
  printf '%s (pid %s%s): %s' "$comm" "$1" "${unit:+, systemd unit $unit}" "$cmd"
}

# Samba and Kerberos daemons the lab did not start: "pid<TAB>daemon|winbind<TAB>name".
foreign_daemons() { # roots
  local d pid comm kind
  for d in /proc/[0-9]*; do
    pid=${d#/proc/}
    comm=$(cat "$d/comm" 2>/dev/null) || continue
    is_daemon "$comm" && alive "$pid" || continue
    is_lab_process "$pid" "$1" && continue
    if [ "$comm" = winbindd ]; then kind=winbind; else kind=daemon; fi
    printf '%s\t%s\t%s\n' "$pid" "$kind" "$comm"
  done
}

# Sockets on the ports the lab needs, held by processes the lab did not start:
# "pid<TAB>dc|backend<TAB>proto address:port". A wildcard address (0.0.0.0, [::], *)
# takes the port on $DC_IP too. Without ss (iproute2, which the lab installs) only the
# daemons above are seen; Samba then names what holds a port when it fails to bind.
foreign_listeners() { # roots
  command -v ss >/dev/null 2>&1 || return 0
  local netid local_addr users addr port ports kind pid
  ss -Hlnptu 2>/dev/null | while read -r netid _ _ _ local_addr _ users; do
    port=${local_addr##*:}
    addr=${local_addr%:*}
    addr=${addr%\%*}
    addr=${addr#[}
    addr=${addr%]}
    case "$netid" in tcp) ports=" $LAB_TCP_PORTS " ;; udp) ports=" $LAB_UDP_PORTS " ;; *) continue ;; esac
    kind=
    case "$addr" in
      0.0.0.0 | '*' | :: | "$DC_IP" | "::ffff:$DC_IP") case "$ports" in *" $port "*) kind=dc ;; esac ;;
    esac
    if [ -z "$kind" ] && [ "$netid" = tcp ] && [ "$port" = "$BACKEND_PORT" ]; then
      case "$addr" in 0.0.0.0 | '*' | :: | 127.0.0.1 | ::ffff:127.0.0.1) kind=backend ;; esac
    fi
    [ -n "$kind" ] || continue
    for pid in $(printf '%s\n' "$users" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -un); do
      is_lab_process "$pid" "$1" || printf '%s\t%s\t%s\n' "$pid" "$kind" "$netid $local_addr"
    done
  done
}

# Every process in the lab's way, one line each: "pid<TAB>why". A process whose parent
# (or grandparent...) is in the way too is told as part of it: one line for a whole
# Samba or Apache, not one per worker.
in_the_way() {
  local roots found pids pid kind detail top up
  roots=$(lab_roots)
  found=$({ foreign_daemons "$roots"; foreign_listeners "$roots"; })
  [ -n "$found" ] || return 0
  pids=" $(cut -f1 <<<"$found" | sort -un | tr '\n' ' ') "
  while IFS="$(printf '\t')" read -r pid kind detail; do
    top=$pid
    up=$(parent_of "$pid") || up=
    while [ -n "$up" ] && [ "$up" -gt 1 ]; do
      case "$pids" in *" $up "*) top=$up ;; esac
      up=$(parent_of "$up") || break
    done
    printf '%s\t%s\t%s\n' "$top" "$kind" "$detail"
  done <<<"$found" | sort -t"$(printf '\t')" -k1,1n -k2,2 -k3,3 -u | awk -F'\t' -v dc="$DC_IP" '
    function flush() {
      if (cur == "") return
      why = daemon
      if (winbind) why = sep(why) "the lab'"'"'s DC would take over its socket in /run/samba/winbindd"
      if (dcs != "") why = sep(why) "holds " dcs ", which the lab'"'"'s DC needs on " dc
      if (backend != "") why = sep(why) "holds " backend ", which the lab'"'"'s backend needs (or choose another: BACKEND_PORT=...)"
      print cur "\t" why
    }
    function sep(s) { return s == "" ? "" : s "; " }
    function add(list, item) { return list == "" ? item : list ", " item }
    $1 != cur { flush(); cur = $1; daemon = ""; winbind = 0; dcs = ""; backend = "" }
    $2 == "daemon" && daemon == "" { daemon = "a " $3 " the lab did not start" }
    $2 == "winbind" { winbind = 1 }
    $2 == "dc" { dcs = add(dcs, $3) }
    $2 == "backend" { backend = add(backend, $3) }
    END { flush() }'
}

# What the machine's own Samba is for, when it says (a domain member's winbind is the
# one thing never to break by accident).
samba_role() {
  [ -f /etc/samba/smb.conf ] && command -v testparm >/dev/null 2>&1 || return 0
  testparm -s --parameter-name="server role" /etc/samba/smb.conf 2>/dev/null | head -1
}

refuse() { # in-the-way lines
  local pid why role
  echo "lab.sh: refusing to start: these are not the lab's, and the lab would stop or break them:" >&2
  while IFS="$(printf '\t')" read -r pid why; do
    echo "  $(describe "$pid")" >&2
    echo "      $why" >&2
  done <<<"$1"
  role=$(samba_role)
  case "$role" in
    *MEMBER* | *member* | *DC* | *controller*)
      echo "  /etc/samba/smb.conf says this machine is: $role. Its domain users log on through winbind." >&2 ;;
  esac
  cat >&2 <<MSG
The lab stops nothing it did not start. Run it on a machine or VM of its own, or, to stop
these services and start the lab anyway (they stay stopped until you start them again):
  LAB_TAKE_OVER=1 lab/lab.sh start        (the same: lab/lab.sh start --take-over)
MSG
}

# LAB_TAKE_OVER: stop what is in the way (by its systemd unit where it is one of the
# services above, else by signal), then look again.
take_over() { # in-the-way lines
  local pid why unit left
  while IFS="$(printf '\t')" read -r pid why; do
    alive "$pid" || continue
    unit=$(unit_of "$pid")
    say "taking over: stopping $(describe "$pid")"
    if [ -n "$unit" ] && [ -d /run/systemd/system ]; then
      systemctl stop "$unit" || true
    else
      kill "$pid" 2>/dev/null || true
    fi
    for _ in $(seq 100); do alive "$pid" || break; sleep 0.1; done
  done <<<"$1"
  left=$(in_the_way)
  if [ -n "$left" ]; then
    echo "lab.sh: these are still in the lab's way after LAB_TAKE_OVER:" >&2
    while IFS="$(printf '\t')" read -r pid why; do echo "  $(describe "$pid"): $why" >&2; done <<<"$left"
    return 1
  fi
}

# Runs before the lab installs, stops or provisions anything.
guard() {
  local found
  found=$(in_the_way)
  [ -n "$found" ] || return 0
  if [ "${LAB_TAKE_OVER:-0}" = 1 ]; then
    take_over "$found"
  else
    refuse "$found"
    return 1
  fi
}
