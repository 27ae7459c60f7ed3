//! Building the signature around a value the caller's key makes (docs/design.md §3.12).
//!
//! The signature is written as text into the document as sent (its own bytes otherwise kept),
//! then every digest is computed from the canonical form of the text re-parsed: what a verifier
//! reads is exactly what was digested. The `Signature` goes into `PrescriptionSign` (replacing an
//! empty one, or added as the last child of `Prescription`), with prefixes `ds` and `xades`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bergshamra_c14n::C14nMode;
use openssl::hash::MessageDigest;
use sha2::{Digest as _, Sha256};
use uppsala::Document;

use crate::xml::{self, DSIG_NS, EXC_C14N, RSA_SHA256, SHA256, SIGNED_PROPERTIES_TYPE, XADES_NS, XADES141_NS};
use crate::{DocumentError, ValidationData};

/// The signature's `Id`, and those of its parts.
pub const SIGNATURE_ID: &str = "PrescriptionSign";
const KEY_INFO_ID: &str = "PrescriptionSign-KeyInfo";
const SIGNED_PROPERTIES_ID: &str = "PrescriptionSign-SignedProperties";
const SIGNATURE_VALUE_ID: &str = "PrescriptionSign-SignatureValue";
const TIME_STAMP_ID: &str = "PrescriptionSign-SignatureTimeStamp";

/// Marks where the later steps write; none can occur in XML text produced here otherwise.
const SIGNED_INFO_MARK: &str = "\u{1}SIGNED-INFO\u{1}";
const VALUE_MARK: &str = "\u{1}SIGNATURE-VALUE\u{1}";
const UNSIGNED_MARK: &str = "\u{1}UNSIGNED\u{1}";

/// An unsigned document with its `SignedInfo` built, waiting for the signature value.
pub struct Prepared {
    /// The document with the signature in place, `SignatureValue` and unsigned properties marked.
    text: String,
    signed_info_digest: [u8; 32],
    certificate: Vec<u8>,
}

/// A signed document waiting for its signature time-stamp.
pub struct Signed {
    /// The document with the value in place, the unsigned properties marked.
    text: String,
    imprint: [u8; 32],
}

fn structure(m: impl Into<String>) -> DocumentError {
    DocumentError::Structure(m.into())
}

fn sha256_b64(bytes: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(bytes))
}

/// The unsigned document's checks; the byte range the new `PrescriptionSign` replaces: an empty
/// one's, or an empty range before `Prescription`'s end tag.
fn insertion_point(doc: &Document<'_>) -> Result<std::ops::Range<usize>, DocumentError> {
    let root = doc.document_element().ok_or_else(|| structure("no document element"))?;
    if !xml::is(doc, root, None, "Document") {
        return Err(structure("the document element is not Document"));
    }
    let prescription = xml::only_child(doc, root, None, "Prescription").ok_or_else(|| structure("Document must hold one Prescription"))?;
    xml::only_child(doc, prescription, None, "PrescriptionManagement").ok_or_else(|| structure("Prescription must hold one PrescriptionManagement"))?;
    let pd = xml::only_child(doc, prescription, None, "PrescriptionDocument").ok_or_else(|| structure("Prescription must hold one PrescriptionDocument"))?;
    if xml::attr(doc, pd, "id") != Some("PrescriptionDocument") {
        return Err(structure("PrescriptionDocument must have id=\"PrescriptionDocument\""));
    }
    let csv: String = xml::text(doc, pd).split_whitespace().collect();
    if csv.is_empty() || STANDARD.decode(csv.as_bytes()).is_err() {
        return Err(structure("PrescriptionDocument must hold the base64 of the prescription CSV"));
    }
    if !xml::all_named(doc, Some(DSIG_NS), "Signature").is_empty() {
        return Err(DocumentError::AlreadySigned);
    }
    xml::ids(doc).map_err(|id| structure(format!("the id {id:?} is used twice")))?;
    let range = |id| doc.node_range(id).ok_or_else(|| structure("no source position"));
    match xml::children_named(doc, prescription, None, "PrescriptionSign").as_slice() {
        [] => {
            // Before Prescription's end tag.
            let whole = range(prescription)?;
            let source = &doc.input_text()[whole.clone()];
            let end = source.rfind("</").ok_or_else(|| structure("Prescription has no end tag"))?;
            Ok(whole.start + end..whole.start + end)
        }
        [sign] => {
            if !xml::child_elements(doc, *sign).is_empty() || !xml::text(doc, *sign).trim().is_empty() {
                return Err(DocumentError::AlreadySigned);
            }
            range(*sign)
        }
        _ => Err(structure("Prescription must hold at most one PrescriptionSign")),
    }
}

/// xs:dateTime in UTC.
fn date_time(unix: i64) -> Result<String, DocumentError> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).map_err(|e| DocumentError::Input(format!("signing time: {e}")))?;
    let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&f).map_err(|e| DocumentError::Input(format!("signing time: {e}")))
}

fn reparse(text: &str) -> Result<Document<'_>, DocumentError> {
    xml::parse(text.as_bytes()).map_err(|e| DocumentError::Input(format!("the signed document does not parse: {}", e.0)))
}

/// The canonical forms of the elements with these ids in `text`, in `mode` each (one parse).
fn canonical_by_ids(text: &str, wanted: &[(&str, C14nMode)]) -> Result<Vec<Vec<u8>>, DocumentError> {
    let doc = reparse(text)?;
    let ids = xml::ids(&doc).map_err(|dup| DocumentError::Input(format!("the id {dup:?} is used twice")))?;
    wanted
        .iter()
        .map(|(id, mode)| {
            let node = *ids.get(*id).ok_or_else(|| DocumentError::Input(format!("no element with id {id}")))?;
            xml::canonical(&doc, node, *mode, &[]).map_err(DocumentError::Input)
        })
        .collect()
}

impl Prepared {
    /// Checks `document` (UTF-8 XML) and builds the signature for the signer's `certificate` (DER)
    /// at `signing_time` (Unix seconds, written as UTC xs:dateTime).
    pub fn new(document: &[u8], certificate: &[u8], signing_time: i64) -> Result<Prepared, DocumentError> {
        let doc = xml::parse(document).map_err(|e| DocumentError::NotXml(e.0))?;
        let at = insertion_point(&doc)?;
        x509_parser::parse_x509_certificate(certificate).map_err(|e| DocumentError::Input(format!("certificate: {e}")))?;
        let source = doc.input_text();
        let signature = format!(
            "<ds:Signature xmlns:ds=\"{DSIG_NS}\" Id=\"{SIGNATURE_ID}\">{SIGNED_INFO_MARK}\
             <ds:SignatureValue Id=\"{SIGNATURE_VALUE_ID}\">{VALUE_MARK}</ds:SignatureValue>\
             <ds:KeyInfo Id=\"{KEY_INFO_ID}\"><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
             <ds:Object><xades:QualifyingProperties xmlns:xades=\"{XADES_NS}\" Target=\"#{SIGNATURE_ID}\">\
             <xades:SignedProperties Id=\"{SIGNED_PROPERTIES_ID}\"><xades:SignedSignatureProperties>\
             <xades:SigningTime>{time}</xades:SigningTime>\
             <xades:SigningCertificateV2><xades:Cert><xades:CertDigest><ds:DigestMethod Algorithm=\"{SHA256}\"/>\
             <ds:DigestValue>{cert_digest}</ds:DigestValue></xades:CertDigest></xades:Cert></xades:SigningCertificateV2>\
             </xades:SignedSignatureProperties></xades:SignedProperties>{UNSIGNED_MARK}\
             </xades:QualifyingProperties></ds:Object></ds:Signature>",
            cert = STANDARD.encode(certificate),
            time = date_time(signing_time)?,
            cert_digest = sha256_b64(certificate),
        );
        let text = format!("{}<PrescriptionSign>{signature}</PrescriptionSign>{}", &source[..at.start], &source[at.end..]);
        // Reference digests, from the text as it will be read (the marks are outside the referenced
        // elements, so filling them in later changes none of these).
        let parsed = text.replace(SIGNED_INFO_MARK, "").replace(VALUE_MARK, "").replace(UNSIGNED_MARK, "");
        let digests = canonical_by_ids(
            &parsed,
            &[("PrescriptionDocument", C14nMode::Inclusive), (KEY_INFO_ID, C14nMode::Exclusive), (SIGNED_PROPERTIES_ID, C14nMode::Exclusive)],
        )?;
        let [document_digest, key_info_digest, properties_digest] = [0, 1, 2].map(|i| sha256_b64(&digests[i]));
        let signed_info = format!(
            "<ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"{EXC_C14N}\"/><ds:SignatureMethod Algorithm=\"{RSA_SHA256}\"/>\
             <ds:Reference URI=\"#PrescriptionDocument\"><ds:DigestMethod Algorithm=\"{SHA256}\"/><ds:DigestValue>{document_digest}</ds:DigestValue></ds:Reference>\
             <ds:Reference URI=\"#{KEY_INFO_ID}\"><ds:Transforms><ds:Transform Algorithm=\"{EXC_C14N}\"/></ds:Transforms>\
             <ds:DigestMethod Algorithm=\"{SHA256}\"/><ds:DigestValue>{key_info_digest}</ds:DigestValue></ds:Reference>\
             <ds:Reference Type=\"{SIGNED_PROPERTIES_TYPE}\" URI=\"#{SIGNED_PROPERTIES_ID}\"><ds:Transforms><ds:Transform Algorithm=\"{EXC_C14N}\"/></ds:Transforms>\
             <ds:DigestMethod Algorithm=\"{SHA256}\"/><ds:DigestValue>{properties_digest}</ds:DigestValue></ds:Reference>\
             </ds:SignedInfo>"
        );
        let text = text.replace(SIGNED_INFO_MARK, &signed_info);
        let clean = text.replace(VALUE_MARK, "").replace(UNSIGNED_MARK, "");
        let doc = reparse(&clean)?;
        let signed_info_node = xml::all_named(&doc, Some(DSIG_NS), "SignedInfo").first().copied().ok_or_else(|| structure("no SignedInfo"))?;
        let canonical = xml::canonical(&doc, signed_info_node, C14nMode::Exclusive, &[]).map_err(DocumentError::Input)?;
        Ok(Prepared { signed_info_digest: Sha256::digest(&canonical).into(), text, certificate: certificate.to_vec() })
    }

    /// SHA-256 of the exclusive canonical form of `SignedInfo`: what the key signs.
    pub fn signed_info_digest(&self) -> [u8; 32] {
        self.signed_info_digest
    }

    /// Places the RSASSA-PKCS1-v1_5 signature value over [`Prepared::signed_info_digest`]; it is
    /// checked against the certificate's key.
    pub fn with_signature(self, signature_value: &[u8]) -> Result<Signed, DocumentError> {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.certificate).map_err(|e| DocumentError::Input(format!("certificate: {e}")))?;
        if !crate::verify::rsa_digest_verifies(cert.public_key().raw, MessageDigest::sha256(), &self.signed_info_digest, signature_value) {
            return Err(DocumentError::Input("the signature value does not verify under the certificate".into()));
        }
        let text = self.text.replace(VALUE_MARK, &STANDARD.encode(signature_value));
        let canonical = canonical_by_ids(&text.replace(UNSIGNED_MARK, ""), &[(SIGNATURE_VALUE_ID, C14nMode::Inclusive)])?;
        let imprint = Sha256::digest(&canonical[0]).into();
        Ok(Signed { text, imprint })
    }
}

fn encapsulated(tag: &str, values: &[Vec<u8>]) -> String {
    values.iter().map(|v| format!("<xades:{tag}>{}</xades:{tag}>", STANDARD.encode(v))).collect()
}

fn validation_values(data: &ValidationData) -> String {
    let mut out = String::new();
    if !data.certificates.is_empty() {
        out.push_str(&format!("<xades:CertificateValues>{}</xades:CertificateValues>", encapsulated("EncapsulatedX509Certificate", &data.certificates)));
    }
    if !data.crls.is_empty() {
        out.push_str(&format!(
            "<xades:RevocationValues><xades:CRLValues>{}</xades:CRLValues></xades:RevocationValues>",
            encapsulated("EncapsulatedCRLValue", &data.crls)
        ));
    }
    out
}

impl Signed {
    /// SHA-256 of the inclusive canonical form of the `SignatureValue` element: the imprint of
    /// the `SignatureTimeStamp`.
    pub fn timestamp_imprint(&self) -> [u8; 32] {
        self.imprint
    }

    /// The document without unsigned properties (XAdES B-B), e.g. for an XMLDSig-only check.
    pub fn basic(&self) -> Vec<u8> {
        self.text.replace(UNSIGNED_MARK, "").into_bytes()
    }

    /// The B-LT document: the time-stamp `token` (its imprint must be [`Signed::timestamp_imprint`]),
    /// the signer path's and the TSA path's validation data.
    pub fn complete(self, token: &[u8], signer: &ValidationData, tsa: &ValidationData) -> Result<Vec<u8>, DocumentError> {
        let info = tsp::inspect(token).map_err(|e| DocumentError::Input(format!("time-stamp: {e}")))?;
        if info.imprint_algorithm != tsp::SHA256_OID || info.imprint != self.imprint {
            return Err(DocumentError::Input("the time-stamp is not over this SignatureValue".into()));
        }
        let tsa_values = validation_values(tsa);
        let tsa_data = if tsa_values.is_empty() {
            String::new()
        } else {
            format!("<xades141:TimeStampValidationData xmlns:xades141=\"{XADES141_NS}\">{tsa_values}</xades141:TimeStampValidationData>")
        };
        let unsigned = format!(
            "<xades:UnsignedProperties><xades:UnsignedSignatureProperties>\
             <xades:SignatureTimeStamp Id=\"{TIME_STAMP_ID}\"><xades:EncapsulatedTimeStamp>{token}</xades:EncapsulatedTimeStamp></xades:SignatureTimeStamp>\
             {tsa_data}{signer}</xades:UnsignedSignatureProperties></xades:UnsignedProperties>",
            token = STANDARD.encode(token),
            signer = validation_values(signer),
        );
        Ok(self.text.replace(UNSIGNED_MARK, &unsigned).into_bytes())
    }
}
