//! One configuration generation: everything derived from one configuration
//! file, built whole before it is swapped in (so a broken file never serves).

use std::collections::HashMap;
use std::sync::Arc;

use crate::backend::Target;
use crate::config::{self, Config};
use crate::route;

/// Everything derived from one configuration file.
pub struct Generation {
    pub config: Config,
    pub routes: route::Table,
    /// Each site's farm of backends, by site name.
    pub farms: HashMap<String, Arc<crate::farm::Farm>>,
    /// TLS server configs by listener name.
    pub tls: HashMap<String, Arc<rustls::ServerConfig>>,
    /// The delegating service account, when a site uses KCD.
    pub delegator: Option<Arc<kcd::Delegator>>,
    /// Authentication at the edge, as this generation configures it.
    pub auth: crate::auth::Authenticator,
    /// What access rules may ask about a user.
    pub access: crate::access::Access,
    /// `[admin.sign_in]` as a site without backends: what the status page's
    /// sign-in runs the authenticate and authorize stages for.
    pub admin_site: Option<config::Site>,
}

/// Authentication state that outlives a reload (failed logons, remembered
/// Basic passwords, the sign-in page's sessions and attempt counts): every
/// generation's [`crate::auth::Authenticator`] shares it.
#[derive(Clone)]
pub struct Kept {
    pub lockout: Arc<crate::auth::Lockout>,
    pub basic: Arc<crate::auth::BasicCache>,
    /// Each backend's health, drain and load, the session tables, the
    /// affinity key made at start.
    pub farms: Arc<crate::farm::Registry>,
    pub sessions: crate::auth::forms::Sessions,
    pub attempts: Arc<crate::auth::Attempts>,
    /// The second factors' store, opened at start-up when `[mfa]` is
    /// configured (its path is read once: a reload does not move it).
    pub mfa: Option<Arc<dyn crate::mfa::Store>>,
    pub mfa_counters: Arc<crate::mfa::Counters>,
    /// Second-factor failures, apart from the password's (see
    /// `auth::second_factor::count_failure`).
    pub mfa_lockout: Arc<crate::auth::Lockout>,
    /// The process's counters: each generation hands kcd its observer.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Default for Kept {
    fn default() -> Kept {
        Kept {
            lockout: Default::default(),
            basic: Default::default(),
            farms: Default::default(),
            sessions: Arc::new(crate::session::Memory::default()),
            attempts: Default::default(),
            mfa: None,
            mfa_counters: Default::default(),
            mfa_lockout: Default::default(),
            metrics: Default::default(),
        }
    }
}

impl Generation {
    /// `names`: whether rules' names are looked up (always, but for `check --offline`).
    pub fn build(
        mut config: Config,
        kept: &Kept,
        previous: Option<&Generation>,
        names: crate::access::Names,
    ) -> Result<Self, String> {
        // One target (connector and pool id) per origin and TLS settings,
        // shared by every site and farm that reaches it.
        let mut backends: HashMap<config::Backend, Arc<Target>> = HashMap::new();
        for site in &config.sites {
            for m in &site.farm.members {
                if !backends.contains_key(&m.backend) {
                    let target = Target::new(&m.backend).map_err(|e| format!("site `{}`: {e}", site.name))?;
                    backends.insert(m.backend.clone(), Arc::new(target));
                }
            }
        }
        let mut farms = HashMap::new();
        for site in &config.sites {
            let farm = crate::farm::Farm::build(site, &backends, &kept.farms, &config.affinity)?;
            farms.insert(site.name.clone(), Arc::new(farm));
        }
        let tls = config
            .listeners
            .iter()
            .filter_map(|l| l.tls.as_ref().map(|t| (l.name.clone(), crate::tls::server_config(t, l.http2))))
            .collect();
        let ntlm = match &config.domain {
            None => HashMap::new(),
            Some(d) => {
                let acceptor = |channel_binding| ntlm::AcceptorConfig {
                    netbios_domain: d.netbios_name.clone(),
                    netbios_computer: d.computer_netbios.clone(),
                    dns_domain: d.realm.to_ascii_lowercase(),
                    dns_computer: d.computer_dns.clone(),
                    channel_binding,
                    max_skew: 5 * 60 * 10_000_000,
                };
                let mut by_listener: HashMap<String, ntlm::AcceptorConfig> =
                    config.listeners.iter().map(|l| (l.name.clone(), acceptor(l.channel_binding))).collect();
                // The admin listener is plain HTTP: no TLS channel to bind to.
                if config.admin.as_ref().is_some_and(|a| a.sign_in.is_some()) {
                    by_listener.insert(config::ADMIN_LISTENER.to_owned(), acceptor(ntlm::ChannelBindingPolicy::Off));
                }
                by_listener
            }
        };
        let accounts = config.accounts.as_ref().map(|a| match a {
            config::Accounts::File { users, .. } => crate::accounts::Accounts::File(users.clone()),
            config::Accounts::Winbind { ntlm_auth, smb_conf, helpers, timeout } => crate::accounts::Accounts::Winbind(
                crate::accounts::Winbind::new(ntlm_auth.clone(), smb_conf.clone(), *helpers, *timeout),
            ),
        });
        let delegator =
            match &config.domain {
                Some(d)
                    if config.sites.iter().any(|s| {
                        s.kcd().is_some() || offers_negotiate(s) || !s.rules.is_empty() || offers_provider(s)
                    }) || config.admin.as_ref().is_some_and(|a| a.sign_in.is_some()) =>
                {
                    match (&d.service_principal, &d.keytab) {
                        (Some(_), Some(_)) if previous.is_some_and(|g| same_account(g, &config)) => {
                            let kept = previous.and_then(|g| g.delegator.clone());
                            if let Some(kept) = &kept {
                                kept.set_cache_size(d.credential_cache_size);
                            }
                            kept
                        }
                        (Some(p), Some(k)) => Some(Arc::new(
                            kcd::Delegator::new(p, &k.to_string_lossy(), &d.realm)
                                .with_rc4(d.allow_rc4)
                                .with_cache_size(d.credential_cache_size)
                                .with_logon_refresh(config.access.refresh)
                                .with_logon_grace(config.access.grace)
                                .with_observer(kept.metrics.kdc()),
                        )),
                        _ => None,
                    }
                }
                _ => None,
            };
        let accounts = accounts.map(Arc::new);
        crate::access::resolve(&mut config, delegator.as_ref(), names)?;
        let file = match &config.accounts {
            Some(config::Accounts::File { users, .. }) => Some(users.clone()),
            _ => None,
        };
        let access = crate::access::Access::new(delegator.clone(), file, config.access.refresh);
        let forms = config.forms.as_ref().map(|settings| {
            kept.sessions.set_capacity(settings.max_sessions);
            crate::auth::forms::Forms {
                settings: settings.clone(),
                sessions: kept.sessions.clone(),
                attempts: kept.attempts.clone(),
                mfa: config.mfa.clone().zip(kept.mfa.clone()),
                counters: kept.mfa_counters.clone(),
                second_lockout: kept.mfa_lockout.clone(),
                kdc: kept.metrics.kdc(),
            }
        });
        // Discovery and keys are kept across a reload that leaves the
        // provider as it was; so are the sign-ins in progress.
        let mut providers = Vec::new();
        for (i, idp) in config.idps.iter().enumerate() {
            let same = previous
                .and_then(|g| g.auth.provider(&idp.name))
                .filter(|p| same_idp(&p.settings, idp) && p.index as usize == i);
            match same {
                Some(p) => providers.push(p.clone()),
                None => providers.push(Arc::new(
                    crate::oidc::Provider::new(idp.clone(), i as u8).map_err(|e| format!("idp {}: {e}", idp.name))?,
                )),
            }
        }
        let auth = crate::auth::Authenticator::new(
            &config,
            ntlm,
            accounts,
            delegator.clone(),
            kept.lockout.clone(),
            kept.basic.clone(),
            forms,
        )
        .with_providers(providers);
        let admin_site = config.admin.as_ref().and_then(|a| a.sign_in.as_ref()).map(config::AdminSignIn::site);
        Ok(Generation {
            routes: route::Table::new(&config.sites),
            farms,
            tls,
            delegator,
            auth,
            access,
            admin_site,
            config,
        })
    }
}

impl Generation {
    /// The health checks of this generation's farms (each with the `Host`
    /// they send: the site's `host_header`, else its first host name); they
    /// run until the returned value drops.
    pub fn start_checks(&self) -> crate::farm::Checks {
        let farms = self.config.sites.iter().filter_map(|s| {
            let host = s.host_header.clone().or_else(|| s.hosts.first().cloned());
            Some((self.farms.get(&s.name)?, host))
        });
        crate::farm::Checks::start(farms)
    }

    /// Tells the farm registry what this generation serves, so that what it
    /// lost (a site, a backend) is forgotten.
    pub fn retain_farm_state(&self, registry: &crate::farm::Registry) {
        let members: Vec<_> =
            self.farms.values().flat_map(|f| f.members.iter().map(|m| (f.site.clone(), m.id))).collect();
        let families: Vec<_> = self.farms.values().map(|f| f.family.clone()).collect();
        registry.retain(&members, &families);
    }
}

/// Whether `previous`'s Kerberos service account serves `config` as it is:
/// same account, keytab, realm and RC4 setting, and the same refresh and
/// grace for the users' groups it keeps (else they start afresh).
fn same_account(previous: &Generation, config: &Config) -> bool {
    let (Some(old), Some(new), Some(_)) = (&previous.config.domain, &config.domain, &previous.delegator) else {
        return false;
    };
    let (oa, na) = (&previous.config.access, &config.access);
    new.service_principal == old.service_principal
        && new.keytab == old.keytab
        && new.realm == old.realm
        && new.allow_rc4 == old.allow_rc4
        && (na.refresh, na.grace) == (oa.refresh, oa.grace)
}

/// A provider's users are looked up with the Kerberos service account.
fn offers_provider(s: &config::Site) -> bool {
    s.auth
        .iter()
        .chain(s.auth_for.iter().flat_map(|r| r.auth.iter()))
        .any(|x| matches!(x, config::Scheme::Oidc(_) | config::Scheme::Bearer(_)))
}

fn same_idp(a: &config::Idp, b: &config::Idp) -> bool {
    (a.issuer.as_str(), a.client_id.as_str(), a.client_secret.0.as_str(), &a.ca_file, a.timeout)
        == (b.issuer.as_str(), b.client_id.as_str(), b.client_secret.0.as_str(), &b.ca_file, b.timeout)
        && a.redirect_path == b.redirect_path
        && a.scopes == b.scopes
        && a.clock_skew == b.clock_skew
        && a.required_claims == b.required_claims
        && a.user_claim == b.user_claim
        && a.mapping == b.mapping
        && a.group_claim == b.group_claim
        && a.bearer_audience == b.bearer_audience
        && a.post_logout_path == b.post_logout_path
}

/// Negotiate and Basic need the Kerberos service account.
fn offers_negotiate(s: &config::Site) -> bool {
    s.offers(config::Scheme::Negotiate) || s.offers(config::Scheme::Basic)
}
