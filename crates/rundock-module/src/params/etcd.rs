//! The `etcd` option, shared by the record and `watch`: the endpoints (a string for
//! short), `api`, `prefix`, the TLS files and `username`/`password`. Errors name
//! `etcd.FIELD`.

use super::choice::{choice, Choice};
use super::coerce::{one_of_words, parse_as, Params};
use rundock_spec::error::{Result, SpecError};
use rundock_spec::validate::{self, quoted};
use rundock_spec::{EtcdApi, EtcdEndpoint, EtcdSpec, DEFAULT_ETCD_ENDPOINT};
use serde_json::{Map, Value};

// `api`, a sub-option of `etcd`, has no row of its own in the table.
choice!(EtcdApi { V3 => "v3", V2 => "v2" });

pub(super) fn etcd_spec(p: &mut Params) -> Result<EtcdSpec> {
    let mut spec = EtcdSpec::new(
        vec![DEFAULT_ETCD_ENDPOINT
            .parse()
            .expect("the default endpoint parses")],
        EtcdApi::V3,
    );
    let Some(value) = p.take("etcd") else {
        return Ok(spec);
    };
    let map = match value {
        Value::String(s) if !s.trim_start().starts_with('{') => {
            let mut map = Map::new();
            map.insert("endpoints".into(), Value::String(s));
            map
        }
        other => Params::to_object("etcd", other)?,
    };
    let mut e = Params::new(&map).map_err(|err| err.within("etcd"))?;
    sub_options(&mut e, &mut spec)
        .and_then(|()| e.finish())
        .map_err(|err| err.within("etcd"))?;
    Ok(spec)
}

/// The keys of the `etcd` mapping, over the defaults in `spec`.
fn sub_options(e: &mut Params, spec: &mut EtcdSpec) -> Result<()> {
    if let Some(endpoints) = e.words("endpoints")? {
        if endpoints.is_empty() {
            return Err(SpecError::new(
                "endpoints",
                "needs at least one http(s)://HOST:PORT",
            ));
        }
        spec.endpoints = endpoints
            .iter()
            .map(|ep| parse_as::<EtcdEndpoint>("endpoints", ep))
            .collect::<Result<_>>()?;
    }
    if let Some(api) = e.string("api")? {
        spec.api = EtcdApi::from_word(&api).ok_or_else(|| {
            let words: Vec<&str> = EtcdApi::ALL.iter().map(|api| api.word()).collect();
            SpecError::new(
                "api",
                format!(
                    "{} is not an etcd API: {}",
                    quoted(&api),
                    one_of_words(&words)
                ),
            )
        })?;
    }
    if let Some(prefix) = e.string("prefix")? {
        spec.prefix = validate::key_prefix("prefix", &prefix)?;
    }
    spec.ca_file = e.path("ca_file")?;
    spec.cert_file = e.path("cert_file")?;
    spec.key_file = e.path("key_file")?;
    spec.check_tls()
        .map_err(|(field, why)| SpecError::new(field, why))?;
    spec.username = e.string("username")?;
    spec.password = e.string("password")?;
    if spec.username.is_some() != spec.password.is_some() {
        return Err(SpecError::new(
            "username",
            "username and password go together: give both or neither",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::announced;
    use rundock_spec::EtcdApi;
    use serde_json::json;

    #[test]
    fn etcd_takes_a_mapping_or_its_endpoints_and_names_a_bad_key_under_etcd() {
        let etcd = |value| {
            announced(json!({"announce": 80, "etcd": value}))
                .map(|r| r.spec.unwrap().announce.unwrap().etcd)
        };
        let short = etcd(json!("http://10.0.0.1:2379, http://10.0.0.2:2379")).unwrap();
        assert_eq!(short.endpoints.len(), 2);
        assert_eq!(short.api, EtcdApi::V3);
        let v2 = etcd(json!({"endpoints": ["http://10.0.0.1:2379"], "api": "v2"})).unwrap();
        assert_eq!(v2.api, EtcdApi::V2);
        let err = etcd(json!({"api": "v4"})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "etcd.api: \"v4\" is not an etcd API: v3 or v2"
        );
        let err = etcd(json!({"username": "u"})).unwrap_err();
        assert_eq!(err.field, "etcd.username");
        let err = etcd(json!({"endpoint": "x"})).unwrap_err();
        assert_eq!(err.field, "etcd.endpoint");
    }
}
