//! A fault on the command line: `KIND:key=value,...` (`--fault`, `netfault fault`, `heal`),
//! parsed into the same [`Fault`] a case file's `[[fault]]` table gives, and printed back.

use super::registry::{Fault, CATALOG};

impl Fault {
    /// `delete-masquerade:node=node1`, `nft-reject:node=node1,from=pod-a,proto=tcp,port=80`.
    pub fn parse_spec(arg: &str) -> Result<Fault, String> {
        let (kind, params) = arg.split_once(':').unwrap_or((arg, ""));
        let kind = kind.trim();
        let Some(k) = CATALOG.iter().find(|k| k.name == kind) else {
            let near = crate::topology::did_you_mean(kind, CATALOG.iter().map(|k| k.name));
            return Err(match near {
                Some(n) => format!("{arg}: unknown fault kind \"{kind}\"; did you mean \"{n}\"?"),
                None => format!(
                    "{arg}: unknown fault kind \"{kind}\" (netfault faults lists the kinds)"
                ),
            });
        };
        let known: Vec<&str> = k.params.iter().map(|(p, _)| *p).collect();
        let mut t = toml::Table::new();
        t.insert("type".into(), toml::Value::String(kind.to_string()));
        for kv in params.split(',').filter(|s| !s.trim().is_empty()) {
            let Some((key, v)) = kv.split_once('=') else {
                return Err(format!(
                    "\"{kv}\" in {arg}: parameters are KEY=VALUE, separated by commas"
                ));
            };
            let key = key.trim();
            if !known.contains(&key) {
                let near = crate::topology::did_you_mean(key, known.iter().copied())
                    .map(|n| format!("did you mean \"{n}\"? "))
                    .unwrap_or_default();
                return Err(format!(
                    "{arg}: {kind} has no parameter \"{key}\"; {near}{kind} takes {}",
                    takes(&known)
                ));
            }
            let v = v.trim();
            let value = match v.parse::<i64>() {
                Ok(n) => toml::Value::Integer(n),
                Err(_) => toml::Value::String(v.to_string()),
            };
            t.insert(key.to_string(), value);
        }
        t.try_into::<Fault>().map_err(|e| {
            format!(
                "{arg}: {}; {kind} takes {}",
                e.message().trim(),
                takes(&known)
            )
        })
    }

    /// The fault as `KIND:key=value,...`, which [`Fault::parse_spec`] reads back.
    pub fn spec(&self) -> String {
        let params: Vec<String> = self
            .params()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        match params.is_empty() {
            true => self.name().to_string(),
            false => format!("{}:{}", self.name(), params.join(",")),
        }
    }
}

/// The fault as a case file's `[[fault]]` table.
pub fn case_toml(f: &Fault) -> String {
    let mut t = toml::Table::new();
    let v = toml::Value::try_from(f).expect("a fault is a TOML table");
    t.insert("fault".into(), toml::Value::Array(vec![v]));
    toml::to_string(&t).expect("toml")
}

fn takes(known: &[&str]) -> String {
    match known.is_empty() {
        true => "no parameters".into(),
        false => known.join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_print_back_and_suggest() {
        let f = Fault::parse_spec("nft-reject:node=node1,from=pod-a,proto=tcp,port=80").unwrap();
        assert_eq!(
            f.spec(),
            "nft-reject:node=node1,from=pod-a,proto=tcp,port=80"
        );
        assert_eq!(Fault::parse_spec(&f.spec()).unwrap(), f);
        let f = Fault::parse_spec("disable-ip-forward:node=node1").unwrap();
        assert_eq!(Fault::parse_spec(&f.spec()).unwrap(), f);
        let e = Fault::parse_spec("delete-masquerde:node=node1").unwrap_err();
        assert!(e.contains("did you mean \"delete-masquerade\""), "{e}");
        let e = Fault::parse_spec("delete-masquerade:host=node1").unwrap_err();
        assert!(e.contains("no parameter \"host\""), "{e}");
        assert!(e.contains("takes node"), "{e}");
        let e = Fault::parse_spec("delete-veth:pd=pod-a").unwrap_err();
        assert!(e.contains("did you mean \"pod\""), "{e}");
        let e = Fault::parse_spec("melt:x=1").unwrap_err();
        assert!(e.contains("netfault faults lists"), "{e}");
        assert!(Fault::parse_spec("delete-veth:pod")
            .unwrap_err()
            .contains("KEY=VALUE"));
    }
}
