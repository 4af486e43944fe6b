//! The kubelet's `CredentialProviderConfig` (`kubelet.config.k8s.io/v1`, YAML or JSON), checked
//! as the kubelet checks it when it starts.

use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;

use super::duration::parse_go_duration;
use super::CredentialError;
use crate::image::credentials::pattern::Pattern;

/// Config API versions the kubelet reads; their provider fields are the same.
const CONFIG_API_VERSIONS: [&str; 3] = [
    "kubelet.config.k8s.io/v1",
    "kubelet.config.k8s.io/v1beta1",
    "kubelet.config.k8s.io/v1alpha1",
];
const CONFIG_KIND: &str = "CredentialProviderConfig";
/// Plugin API versions; the request and response fields used here are the same in all three.
const PLUGIN_API_VERSIONS: [&str; 3] = [
    "credentialprovider.kubelet.k8s.io/v1",
    "credentialprovider.kubelet.k8s.io/v1beta1",
    "credentialprovider.kubelet.k8s.io/v1alpha1",
];

/// One validated provider entry.
#[derive(Clone)]
pub(super) struct ProviderConfig {
    pub(super) name: String,
    pub(super) match_images: Vec<Pattern>,
    pub(super) default_cache_duration: Duration,
    pub(super) api_version: String,
    pub(super) args: Vec<String>,
    /// Added to the inherited environment; values may be secrets, so never logged.
    pub(super) env: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    providers: Vec<ProviderSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProviderSpec {
    #[serde(default)]
    name: String,
    #[serde(default)]
    match_images: Vec<String>,
    default_cache_duration: Option<String>,
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<EnvVar>,
    token_attributes: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct EnvVar {
    name: String,
    #[serde(default)]
    value: String,
}

/// Parses and validates a config (YAML, of which JSON is a subset).
pub(super) fn parse(text: &str) -> Result<Vec<ProviderConfig>, CredentialError> {
    let file: ConfigFile = serde_norway::from_str(text).map_err(CredentialError::ParseConfig)?;
    if !CONFIG_API_VERSIONS.contains(&file.api_version.as_str()) || file.kind != CONFIG_KIND {
        return Err(CredentialError::ConfigKind {
            api_version: file.api_version,
            kind: file.kind,
        });
    }
    if file.providers.is_empty() {
        return Err(CredentialError::NoProviders);
    }

    let mut providers: Vec<ProviderConfig> = Vec::with_capacity(file.providers.len());
    for spec in file.providers {
        let provider = validate(spec)?;
        if providers.iter().any(|p| p.name == provider.name) {
            return Err(CredentialError::DuplicateProvider {
                name: provider.name,
            });
        }
        providers.push(provider);
    }
    Ok(providers)
}

fn validate(spec: ProviderSpec) -> Result<ProviderConfig, CredentialError> {
    let name = spec.name;
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\\', '\0']) {
        return Err(CredentialError::ProviderName { name });
    }
    if spec.token_attributes.is_some() {
        return Err(CredentialError::TokenAttributes { name });
    }
    if !PLUGIN_API_VERSIONS.contains(&spec.api_version.as_str()) {
        return Err(CredentialError::ProviderApiVersion {
            name,
            api_version: spec.api_version,
        });
    }

    if spec.match_images.is_empty() {
        return Err(CredentialError::NoMatchImages { name });
    }
    let mut match_images = Vec::with_capacity(spec.match_images.len());
    for text in spec.match_images {
        match Pattern::from_match_image(&text) {
            Some(pattern) => match_images.push(pattern),
            None => {
                return Err(CredentialError::MatchImage {
                    name,
                    pattern: text,
                })
            }
        }
    }

    let Some(default_cache_duration) = spec
        .default_cache_duration
        .as_deref()
        .and_then(parse_go_duration)
    else {
        return Err(CredentialError::DefaultCacheDuration {
            name,
            value: spec.default_cache_duration,
        });
    };

    let mut env = Vec::with_capacity(spec.env.len());
    for var in spec.env {
        if var.name.is_empty() || var.name.contains(['=', '\0']) || var.value.contains('\0') {
            return Err(CredentialError::EnvVar {
                name,
                var: var.name,
            });
        }
        env.push((var.name, var.value));
    }

    Ok(ProviderConfig {
        name,
        match_images,
        default_cache_duration,
        api_version: spec.api_version,
        args: spec.args,
        env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECR: &str = r#"
apiVersion: kubelet.config.k8s.io/v1
kind: CredentialProviderConfig
providers:
  - name: ecr-credential-provider
    matchImages:
      - "*.dkr.ecr.*.amazonaws.com"
      - "*.dkr.ecr.*.amazonaws.com.cn"
    defaultCacheDuration: "12h"
    apiVersion: credentialprovider.kubelet.k8s.io/v1
    args: [get-credentials]
    env:
      - name: AWS_PROFILE
        value: temp
"#;

    #[test]
    fn reads_an_eks_style_config() {
        let providers = parse(ECR).unwrap();
        let [provider] = providers.as_slice() else {
            panic!("one provider expected");
        };
        assert_eq!(provider.name, "ecr-credential-provider");
        assert_eq!(provider.match_images.len(), 2);
        assert_eq!(
            provider.default_cache_duration,
            Duration::from_secs(12 * 3600)
        );
        assert_eq!(provider.api_version, "credentialprovider.kubelet.k8s.io/v1");
        assert_eq!(provider.args, vec!["get-credentials".to_string()]);
        assert_eq!(provider.env, vec![("AWS_PROFILE".into(), "temp".into())]);
    }

    #[test]
    fn reads_json_too() {
        let json = r#"{"apiVersion": "kubelet.config.k8s.io/v1", "kind": "CredentialProviderConfig",
            "providers": [{"name": "p", "matchImages": ["gcr.io"], "defaultCacheDuration": "0",
                           "apiVersion": "credentialprovider.kubelet.k8s.io/v1"}]}"#;
        let providers = parse(json).unwrap();
        assert_eq!(providers.len(), 1);
    }

    #[test]
    fn rejects_what_the_kubelet_rejects() {
        let provider = |fields: &str| {
            format!(
                "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\n\
                 providers:\n  - {fields}\n"
            )
        };
        let ok = "{name: p, matchImages: [gcr.io], defaultCacheDuration: 1m, \
                  apiVersion: credentialprovider.kubelet.k8s.io/v1}";
        assert!(parse(&provider(ok)).is_ok());

        let cases = [
            ("apiVersion: v1\nkind: Pod\nproviders: []".to_string(), "ConfigKind"),
            (
                "apiVersion: kubelet.config.k8s.io/v1\nkind: CredentialProviderConfig\nproviders: []"
                    .to_string(),
                "NoProviders",
            ),
            ("providers: {".to_string(), "ParseConfig"),
            (provider(&ok.replace("name: p", "name: ../p")), "ProviderName"),
            (provider(&ok.replace("name: p", "name: ''")), "ProviderName"),
            (provider(&ok.replace("[gcr.io]", "[]")), "NoMatchImages"),
            (provider(&ok.replace("[gcr.io]", "['https://gcr.io']")), "MatchImage"),
            (provider(&ok.replace("1m", "-1m")), "DefaultCacheDuration"),
            (provider(&ok.replace(", defaultCacheDuration: 1m", "")), "DefaultCacheDuration"),
            (provider(&ok.replace("kubelet.k8s.io/v1}", "kubelet.k8s.io/v2}")), "ProviderApiVersion"),
            (
                provider(&ok.replace("}", ", tokenAttributes: {serviceAccountTokenAudience: x}}")),
                "TokenAttributes",
            ),
            (provider(&ok.replace("}", ", env: [{name: 'A=B', value: x}]}")), "EnvVar"),
            (format!("{}  - {ok}\n", provider(ok)), "DuplicateProvider"),
        ];
        for (text, variant) in cases {
            let err = parse(&text).err().unwrap();
            assert!(format!("{err:?}").starts_with(variant), "{text}\n{err:?}");
        }
    }
}
