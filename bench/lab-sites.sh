# Sourced by bench/run.sh (BENCH_ONLY=ab) and bench/instructions.sh: one
# gatehouse configuration with an anonymous, an NTLM and a KCD site in front of
# gh-backend, NTLM users user01..user10 from a file, the lab's KDC (source
# "$LAB/env" first). The access log goes to /dev/null: these runs compare
# builds, and a file of every request of many runs fills the disk.
#   lab_sites_toml WORKDIR BACKEND ANON_PORT NTLM_PORT KCD_PORT > FILE
lab_sites_toml() {
  local w=$1 backend=$2 anon=$3 ntlm=$4 kcd=$5
  for i in $(seq -w 1 10); do echo "ADTEST:user$i:User-Pass1"; done > "$w/users-lab-sites.ntlm"
  cat <<TOML
[log]
access = "/dev/null"
level = "warn"

[domain]
realm = "AD.TEST"
netbios_name = "ADTEST"
krb5_conf = "$KRB5_CONFIG"
keytab = "$LAB_PROXY_KEYTAB"
service_principal = "svc-proxy@AD.TEST"

[accounts]
source = "file"
file = "$w/users-lab-sites.ntlm"

[[listener]]
name = "anon"
bind = "127.0.0.1:$anon"

[[listener]]
name = "ntlm"
bind = "127.0.0.1:$ntlm"

[[listener]]
name = "kcd"
bind = "127.0.0.1:$kcd"

[[site]]
name = "anon"
listener = "anon"
backend = "http://$backend"

[[site]]
name = "ntlm"
listener = "ntlm"
backend = "http://$backend"
auth = ["NTLM"]

[[site]]
name = "kcd"
listener = "kcd"
backend = "http://$backend"
auth = ["NTLM"]
delegation = "kcd"
backend_spn = "HTTP/backend.ad.test"
TOML
}
