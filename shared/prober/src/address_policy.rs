//! Which addresses a probe may target. Health URLs come from whoever can XADD to the log, so
//! without a policy the prober is a server-side request forgery tool pointed at the cloud
//! metadata service. Denied by default: link-local (169.254.0.0/16, fe80::/10, which hold
//! the AWS/GCP/Azure metadata endpoints), AWS's IPv6 metadata address and Alibaba's.

use std::net::IpAddr;

use ipnet::IpNet;

/// Deny ranges with allow-list exceptions.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
}

impl AddressPolicy {
    pub fn new(deny: Vec<IpNet>, allow: Vec<IpNet>) -> Self {
        Self { deny, allow }
    }

    pub fn default_deny() -> Vec<IpNet> {
        [
            "169.254.0.0/16",
            "fe80::/10",
            "fd00:ec2::254/128",
            "100.100.100.200/32",
        ]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect()
    }

    /// `Err` names the range that denies `ip`.
    pub fn check(&self, ip: IpAddr) -> Result<(), IpNet> {
        // ::ffff:169.254.169.254 is the same host as 169.254.169.254.
        let ip = ip.to_canonical();
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match self.deny.iter().find(|net| net.contains(&ip)) {
            Some(net) => Err(*net),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_are_denied_unless_allowed() {
        let p = AddressPolicy::new(AddressPolicy::default_deny(), vec![]);
        for bad in [
            "169.254.169.254",
            "fe80::1",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "100.100.100.200",
        ] {
            assert!(p.check(bad.parse().unwrap()).is_err(), "{bad}");
        }
        for good in ["127.0.0.1", "10.0.0.5", "::1", "2001:db8::1"] {
            assert!(p.check(good.parse().unwrap()).is_ok(), "{good}");
        }
        let allowed = AddressPolicy::new(
            AddressPolicy::default_deny(),
            vec!["169.254.10.0/24".parse().unwrap()],
        );
        assert!(allowed.check("169.254.10.7".parse().unwrap()).is_ok());
        assert!(allowed.check("169.254.169.254".parse().unwrap()).is_err());
    }
}
