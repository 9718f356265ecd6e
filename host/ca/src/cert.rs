//! Certificates: the root CA, node keys and CSRs, issuing, and reading a certificate's identity.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand::Rng as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest as _, Sha256};
use swarm_types::NodeRole;
use tracing::{debug, info};
use x509_parser::prelude::{FromDer as _, X509Certificate};

use crate::{CaError, MANAGER_OU, MANAGER_SERVER_NAME, ROOT_VALIDITY, WORKER_OU};

/// How far back a new certificate's validity starts (clock skew between machines).
const BACKDATE: Duration = Duration::from_secs(60);

fn invalid(what: &str, e: impl std::fmt::Display) -> CaError {
    CaError::Invalid(format!("{what}: {e}"))
}

/// `t` as the time rcgen takes; an error (not a panic, as `From` would) outside its range.
fn offset(t: SystemTime, what: &str) -> Result<time::OffsetDateTime, CaError> {
    let out_of_range = || CaError::Invalid(format!("{what}: {t:?} is out of range"));
    let epoch = time::OffsetDateTime::UNIX_EPOCH;
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => time::Duration::try_from(after)
            .ok()
            .and_then(|d| epoch.checked_add(d)),
        Err(before) => time::Duration::try_from(before.duration())
            .ok()
            .and_then(|d| epoch.checked_sub(d)),
    }
    .ok_or_else(out_of_range)
}

/// `now + validity`, or an error when that is past what a certificate can say.
fn later(now: SystemTime, validity: Duration) -> Result<SystemTime, CaError> {
    now.checked_add(validity)
        .ok_or_else(|| CaError::Invalid(format!("validity {validity:?} is too long")))
}

/// `now` moved back by [`BACKDATE`] (clock skew between machines).
fn backdated(now: SystemTime) -> SystemTime {
    now.checked_sub(BACKDATE).unwrap_or(now)
}

/// The DER of the first certificate in `pem` (or `pem` itself when it is DER already).
fn cert_der(pem_or_der: &[u8], what: &str) -> Result<CertificateDer<'static>, CaError> {
    if pem_or_der.starts_with(b"-----") {
        CertificateDer::from_pem_slice(pem_or_der)
            .map_err(|e| invalid(what, format!("not a PEM certificate ({e})")))
    } else {
        Ok(CertificateDer::from(pem_or_der.to_vec()))
    }
}

fn parse_x509<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, CaError> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| invalid(what, format!("not an X.509 certificate ({e})")))
}

/// Whether the certificate says `CA:true` in its basic constraints.
fn is_ca(x509: &X509Certificate<'_>) -> bool {
    x509.basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca)
}

fn system_time(t: x509_parser::time::ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        SystemTime::UNIX_EPOCH
    }
}

fn key_pair(key_pem: &str) -> Result<KeyPair, CaError> {
    KeyPair::from_pem(key_pem).map_err(|e| invalid("private key", e))
}

/// The cluster's root certificate, and its key on managers.
#[derive(Clone)]
pub struct RootCa {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    key_pem: Option<String>,
    digest: [u8; 32],
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa")
            .field("digest", &swarm_types::digest_hex(&self.digest))
            .field("can_sign", &self.can_sign())
            .finish()
    }
}

impl RootCa {
    /// A new self-signed root (CN `swarm-ca`, O the cluster id), valid 20 years.
    pub fn generate(cluster_id: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| invalid("generating the root key", e))?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid("root CA", e))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, "swarm-ca");
        name.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = name;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = SystemTime::now();
        params.not_before = offset(backdated(now), "root CA not before")?;
        params.not_after = offset(later(now, ROOT_VALIDITY)?, "root CA not after")?;
        params.serial_number = Some(serial());
        let cert = params
            .self_signed(&key)
            .map_err(|e| invalid("signing the root CA", e))?;
        let root = Self::from_pem(&cert.pem(), Some(&key.serialize_pem()))?;
        info!(cluster_id, digest = %swarm_types::digest_hex(&root.digest), "generated a new root CA");
        Ok(root)
    }

    /// A root from PEM, with its key when this node may sign. Checks that the certificate is a
    /// CA and that the key is the certificate's.
    pub fn from_pem(cert_pem: &str, key_pem: Option<&str>) -> Result<Self, CaError> {
        let cert_der = cert_der(cert_pem.as_bytes(), "root CA certificate")?;
        let x509 = parse_x509(&cert_der, "root CA certificate")?;
        if !is_ca(&x509) {
            return Err(CaError::Invalid(
                "root CA certificate: it is not a CA certificate (no basicConstraints CA:true)"
                    .into(),
            ));
        }
        if let Some(key_pem) = key_pem {
            let key = key_pair(key_pem)?;
            if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
                return Err(CaError::Invalid(
                    "root CA key: it is not the key of the root CA certificate".into(),
                ));
            }
        }
        let digest: [u8; 32] = Sha256::digest(cert_der.as_ref()).into();
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            cert_der,
            key_pem: key_pem.map(str::to_string),
            digest,
        })
    }

    /// The root certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    pub(crate) fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// The signing key (PKCS#8 PEM), on managers only.
    pub fn key_pem(&self) -> Option<&str> {
        self.key_pem.as_deref()
    }

    /// The same root without its key: what nodes that only verify hold.
    pub fn without_key(&self) -> RootCa {
        RootCa {
            key_pem: None,
            ..self.clone()
        }
    }

    /// sha256 of the certificate's DER: what join tokens pin.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// Whether this root holds its key and can [`issue`](RootCa::issue) certificates.
    pub fn can_sign(&self) -> bool {
        self.key_pem.is_some()
    }

    /// A node certificate (PEM) for the key in `csr_pem`, whose signature must verify; the
    /// CSR's own subject and extensions are ignored. CN `node_id`, OU the role, O `cluster_id`,
    /// DNS names `node_id` (and [`MANAGER_SERVER_NAME`] for managers), key usages
    /// digitalSignature and keyEncipherment, extended key usages serverAuth and clientAuth;
    /// valid from a minute ago for `validity`.
    pub fn issue(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: NodeRole,
        cluster_id: &str,
        validity: Duration,
    ) -> Result<String, CaError> {
        let now = SystemTime::now();
        self.issue_with_validity_window(
            csr_pem,
            node_id,
            role,
            cluster_id,
            backdated(now),
            later(now, validity)?,
        )
    }

    /// [`RootCa::issue`] with explicit validity bounds (tests issue expired certificates).
    #[doc(hidden)]
    pub fn issue_with_validity_window(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: NodeRole,
        cluster_id: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<String, CaError> {
        let key_pem = self.key_pem.as_deref().ok_or(CaError::NoKey)?;
        let key = key_pair(key_pem)?;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| invalid("certificate request", e))?;
        let issuer = Issuer::from_ca_cert_der(&self.cert_der, key)
            .map_err(|e| invalid("root CA certificate", e))?;
        let mut names = vec![node_id.to_string()];
        if role == NodeRole::Manager {
            names.push(MANAGER_SERVER_NAME.to_string());
        }
        let mut params = CertificateParams::new(names).map_err(|e| invalid("node_id", e))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node_id);
        name.push(DnType::OrganizationalUnitName, role_ou(role));
        name.push(DnType::OrganizationName, cluster_id);
        params.distinguished_name = name;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if not_after <= not_before {
            return Err(CaError::Invalid(
                "node certificate: it would expire before it becomes valid".into(),
            ));
        }
        params.not_before = offset(not_before, "not before")?;
        params.not_after = offset(not_after, "not after")?;
        params.serial_number = Some(serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params
            .signed_by(&csr.public_key, &issuer)
            .map_err(|e| invalid("signing the node certificate", e))?;
        debug!(node_id, ?role, cluster_id, "issued a node certificate");
        Ok(cert.pem())
    }
}

/// A random positive 128-bit serial number.
fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::rng().random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn role_ou(role: NodeRole) -> &'static str {
    match role {
        NodeRole::Manager => MANAGER_OU,
        NodeRole::Worker => WORKER_OU,
    }
}

/// A node's private key and its certificate requests. Keys are ECDSA P-256, PKCS#8 PEM; a key
/// never leaves its node, only its CSR does.
#[derive(Debug)]
pub struct NodeKey;

impl NodeKey {
    /// A new ECDSA P-256 key, as PKCS#8 PEM.
    pub fn generate() -> Result<String, CaError> {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map(|k| k.serialize_pem())
            .map_err(|e| invalid("generating a node key", e))
    }

    /// A certificate request for `key_pem` (CN `node_id`; the CA sets the real subject).
    pub fn csr(key_pem: &str, node_id: &str) -> Result<String, CaError> {
        let key = key_pair(key_pem)?;
        let mut params =
            CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid("csr", e))?;
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, node_id);
        params.distinguished_name = name;
        params
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .map_err(|e| invalid("certificate request", e))
    }
}

/// Who a node certificate says its holder is, and when it is valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    /// The subject's CN.
    pub node_id: String,
    /// From the subject's OU ([`MANAGER_OU`] or [`WORKER_OU`]).
    pub role: NodeRole,
    /// The subject's O.
    pub cluster_id: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

/// Reads the identity in a node certificate (PEM or DER); the error names what is missing.
pub fn parse_cert(pem_or_der: &[u8]) -> Result<CertInfo, CaError> {
    let der = cert_der(pem_or_der, "certificate")?;
    let x509 = parse_x509(&der, "certificate")?;
    info_of(&x509)
}

fn info_of(x509: &X509Certificate<'_>) -> Result<CertInfo, CaError> {
    let subject = x509.subject();
    let first = |attrs: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>,
                 what: &str| {
        attrs
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_string)
            .ok_or_else(|| CaError::Invalid(format!("certificate: the subject has no {what}")))
    };
    let node_id = first(&mut subject.iter_common_name(), "CN (node id)")?;
    let ou = first(&mut subject.iter_organizational_unit(), "OU (role)")?;
    let cluster_id = first(&mut subject.iter_organization(), "O (cluster id)")?;
    let role = match ou.as_str() {
        MANAGER_OU => NodeRole::Manager,
        WORKER_OU => NodeRole::Worker,
        other => {
            return Err(CaError::Invalid(format!(
                "certificate: OU {other:?} is not a role ({MANAGER_OU} or {WORKER_OU})"
            )));
        }
    };
    Ok(CertInfo {
        node_id,
        role,
        cluster_id,
        not_before: system_time(x509.validity().not_before),
        not_after: system_time(x509.validity().not_after),
    })
}

/// A node's TLS identity: its certificate and key, and the root it trusts.
#[derive(Clone)]
pub struct NodeIdentity {
    cert_pem: String,
    key_pem: String,
    cert_der: CertificateDer<'static>,
    root: RootCa,
    info: CertInfo,
}

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("info", &self.info)
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Checks that the certificate was signed by the root and that the key is the
    /// certificate's. An expired certificate is accepted here (see [`NodeIdentity::is_expired`]).
    pub fn new(cert_pem: &str, key_pem: &str, root_pem: &str) -> Result<Self, CaError> {
        let root = RootCa::from_pem(root_pem, None)?;
        let cert_der = cert_der(cert_pem.as_bytes(), "node certificate")?;
        let x509 = parse_x509(&cert_der, "node certificate")?;
        if is_ca(&x509) {
            return Err(CaError::Invalid(
                "node certificate: it is a CA certificate, not a node's".into(),
            ));
        }
        let root_x509 = parse_x509(root.cert_der(), "root CA certificate")?;
        let signed_by_root = x509.issuer().as_raw() == root_x509.subject().as_raw()
            && x509.verify_signature(Some(root_x509.public_key())).is_ok();
        if !signed_by_root {
            return Err(CaError::Invalid(
                "node certificate: it was not issued by this root CA (another cluster?)".into(),
            ));
        }
        let key = key_pair(key_pem)?;
        if key.public_key_raw() != x509.public_key().subject_public_key.data.as_ref() {
            return Err(CaError::Invalid(
                "node key: it is not the key of the node certificate".into(),
            ));
        }
        let info = info_of(&x509)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
            cert_der,
            root,
            info,
        })
    }

    /// Who the certificate says this node is.
    pub fn info(&self) -> &CertInfo {
        &self.info
    }

    /// The node certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The node's private key, PEM.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The root this node trusts (without its key).
    pub fn root(&self) -> &RootCa {
        &self.root
    }

    pub(crate) fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    pub(crate) fn key_der(&self) -> Result<PrivateKeyDer<'static>, CaError> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| invalid("node key", format!("not a PEM private key ({e})")))
    }

    /// When to renew: a random point between 50% and 80% of the lifetime (SwarmKit), so that
    /// nodes do not all renew at once.
    pub fn renew_at(&self) -> SystemTime {
        let lifetime = self
            .info
            .not_after
            .duration_since(self.info.not_before)
            .unwrap_or_default();
        let fraction = rand::rng().random_range(0.5..0.8);
        self.info.not_before + lifetime.mul_f64(fraction)
    }

    /// Whether the certificate has expired at `now` (from `not_after` on).
    pub fn is_expired(&self, now: SystemTime) -> bool {
        now >= self.info.not_after
    }

    /// The rustls server configuration: this certificate, client certificates verified against
    /// the root but optional (joining nodes have none yet), HTTP/2.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, CaError> {
        crate::tls::server_config(self)
    }

    /// The rustls client configuration: presents this certificate, trusts only the root, HTTP/2.
    /// Use it with [`tls_channel`](crate::tls_channel), which verifies
    /// [`MANAGER_SERVER_NAME`].
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, CaError> {
        crate::tls::client_config(Some(self), &self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issue(root: &RootCa, node_id: &str, role: NodeRole) -> (String, String) {
        let key = NodeKey::generate().expect("key");
        let csr = NodeKey::csr(&key, node_id).expect("csr");
        let cert = root
            .issue(&csr, node_id, role, "cluster-1", crate::NODE_VALIDITY)
            .expect("issue");
        (cert, key)
    }

    #[test]
    fn issued_certificates_carry_node_role_and_cluster() {
        let root = RootCa::generate("cluster-1").expect("root");
        for (node_id, role) in [("m1", NodeRole::Manager), ("w1", NodeRole::Worker)] {
            let (cert, key) = issue(&root, node_id, role);
            let info = parse_cert(cert.as_bytes()).expect("parse");
            assert_eq!(info.node_id, node_id);
            assert_eq!(info.role, role);
            assert_eq!(info.cluster_id, "cluster-1");
            let lifetime = info
                .not_after
                .duration_since(info.not_before)
                .expect("order");
            assert!(
                lifetime >= crate::NODE_VALIDITY && lifetime <= crate::NODE_VALIDITY + 2 * BACKDATE
            );
            let identity = NodeIdentity::new(&cert, &key, root.cert_pem()).expect("identity");
            assert_eq!(identity.info(), &info);
        }
    }

    #[test]
    fn bad_requests_and_foreign_certificates_are_refused() {
        let root = RootCa::generate("cluster-1").expect("root");
        let error = root
            .issue("garbage", "n1", NodeRole::Worker, "c", crate::NODE_VALIDITY)
            .expect_err("garbage csr")
            .to_string();
        assert!(error.starts_with("certificate request"), "{error}");
        // A CSR whose signature does not match its content: change the signed subject (the
        // DER stays well formed, only the signature no longer verifies).
        let key = NodeKey::generate().expect("key");
        let csr = NodeKey::csr(&key, "node-a").expect("csr");
        let der = rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(csr.as_bytes())
            .expect("csr der")
            .as_ref()
            .to_vec();
        let at = der
            .windows(6)
            .position(|w| w == b"node-a")
            .expect("the CN is in the DER");
        let mut tampered = der.clone();
        tampered[at + 5] = b'b';
        // Untampered, the same re-encoding is accepted: the refusal below is the signature's.
        assert!(
            root.issue(
                &pem_of("CERTIFICATE REQUEST", &der),
                "n1",
                NodeRole::Worker,
                "c",
                crate::NODE_VALIDITY
            )
            .is_ok()
        );
        let error = root
            .issue(
                &pem_of("CERTIFICATE REQUEST", &tampered),
                "n1",
                NodeRole::Worker,
                "c",
                crate::NODE_VALIDITY,
            )
            .expect_err("tampered csr")
            .to_string();
        assert!(
            error.starts_with("certificate request") && error.contains("ignature"),
            "{error}"
        );
        // A certificate is not a request.
        let (cert, _) = issue(&root, "n2", NodeRole::Worker);
        assert!(
            root.issue(&cert, "n1", NodeRole::Worker, "c", crate::NODE_VALIDITY)
                .is_err()
        );
        // Nor does a certificate that expires before it starts get issued.
        let now = SystemTime::now();
        let error = root
            .issue_with_validity_window(&csr, "n1", NodeRole::Worker, "c", now, now)
            .expect_err("empty window")
            .to_string();
        assert!(error.contains("expire before"), "{error}");

        // A certificate from another root does not make an identity with this root.
        let other = RootCa::generate("cluster-2").expect("other root");
        let (cert, key) = issue(&other, "n1", NodeRole::Worker);
        let error = NodeIdentity::new(&cert, &key, root.cert_pem())
            .expect_err("foreign certificate")
            .to_string();
        assert!(error.contains("not issued by this root CA"), "{error}");
        // Nor with another node's key.
        let (cert, _) = issue(&root, "n1", NodeRole::Worker);
        let error = NodeIdentity::new(&cert, &key, root.cert_pem())
            .expect_err("wrong key")
            .to_string();
        assert!(error.contains("not the key"), "{error}");
        // A root without its key cannot sign; a leaf is not a root.
        let public = RootCa::from_pem(root.cert_pem(), None).expect("public root");
        assert!(matches!(
            public.issue(&csr, "n1", NodeRole::Worker, "c", crate::NODE_VALIDITY),
            Err(CaError::NoKey)
        ));
        let error = RootCa::from_pem(&cert, None)
            .expect_err("leaf as root")
            .to_string();
        assert!(error.contains("not a CA certificate"), "{error}");
        // The root is not a node identity either.
        let error = NodeIdentity::new(
            root.cert_pem(),
            root.key_pem().expect("key"),
            root.cert_pem(),
        )
        .expect_err("root as node")
        .to_string();
        assert!(error.contains("is a CA certificate"), "{error}");
        // A root with another root's key is refused.
        let error = RootCa::from_pem(root.cert_pem(), other.key_pem())
            .expect_err("wrong root key")
            .to_string();
        assert!(error.contains("not the key of the root CA"), "{error}");
    }

    #[test]
    fn parse_errors_name_what_is_missing() {
        let root = RootCa::generate("cluster-1").expect("root");
        // The root has a CN and an O but no OU: it names no role.
        let error = parse_cert(root.cert_pem().as_bytes())
            .expect_err("no OU")
            .to_string();
        assert!(error.contains("no OU (role)"), "{error}");
        let error = parse_cert(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
            .expect_err("garbage pem")
            .to_string();
        assert!(
            error.starts_with("certificate: not a PEM certificate"),
            "{error}"
        );
        let error = parse_cert(b"\x30\x03\x02\x01\x01")
            .expect_err("garbage der")
            .to_string();
        assert!(error.contains("not an X.509 certificate"), "{error}");

        // An OU that is not a role.
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = CertificateParams::new(vec!["n1".to_string()]).expect("params");
        params.distinguished_name.push(DnType::CommonName, "n1");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, "swarm-admin");
        params
            .distinguished_name
            .push(DnType::OrganizationName, "c1");
        let cert = params.self_signed(&key).expect("self signed");
        let error = parse_cert(cert.der()).expect_err("bad OU").to_string();
        assert!(
            error.contains("OU \"swarm-admin\" is not a role"),
            "{error}"
        );
    }

    fn pem_of(label: &str, der: &[u8]) -> String {
        use std::fmt::Write as _;
        const TABLE: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut b64 = String::new();
        for chunk in der.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..4 {
                if i <= chunk.len() {
                    b64.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    b64.push('=');
                }
            }
        }
        let mut out = format!("-----BEGIN {label}-----\n");
        for line in b64.as_bytes().chunks(64) {
            let _ = writeln!(out, "{}", String::from_utf8_lossy(line));
        }
        let _ = writeln!(out, "-----END {label}-----");
        out
    }

    #[test]
    fn the_digest_is_what_join_tokens_pin() {
        let root = RootCa::generate("cluster-1").expect("root");
        let token = swarm_types::JoinToken::new(root.digest(), [3; 16]);
        assert!(token.pins(&root.digest()));
        let reloaded = RootCa::from_pem(root.cert_pem(), None).expect("reload");
        assert!(token.pins(&reloaded.digest()));
        let other = RootCa::generate("cluster-1").expect("other");
        assert!(!token.pins(&other.digest()));
    }

    #[test]
    fn renewal_falls_between_half_and_four_fifths_of_the_lifetime() {
        let root = RootCa::generate("cluster-1").expect("root");
        let (cert, key) = issue(&root, "n1", NodeRole::Worker);
        let identity = NodeIdentity::new(&cert, &key, root.cert_pem()).expect("identity");
        let info = identity.info().clone();
        let lifetime = info
            .not_after
            .duration_since(info.not_before)
            .expect("order");
        for _ in 0..100 {
            let at = identity
                .renew_at()
                .duration_since(info.not_before)
                .expect("after start");
            assert!(
                at >= lifetime.mul_f64(0.5) && at <= lifetime.mul_f64(0.8),
                "{at:?}"
            );
        }
        assert!(!identity.is_expired(SystemTime::now()));
        assert!(identity.is_expired(info.not_after));
        assert!(!identity.is_expired(info.not_after - Duration::from_secs(1)));
    }
}
