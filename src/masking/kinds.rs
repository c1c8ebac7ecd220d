//! The built-in types of sensitive values and their names, the names metrics, logs and
//! the config use (`EMAIL_ADDRESS`, `CREDIT_CARD`, ...).

/// A built-in type of sensitive value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Builtin {
    EmailAddress,
    PhoneNumber,
    CreditCard,
    IbanCode,
    UsSsn,
    IpAddress,
    AwsAccessKey,
    ApiKey,
    Jwt,
    PrivateKey,
    UrlPassword,
    /// A password assigned to a password-like name (`DB_PASSWORD=`, `"password": "..."`).
    Password,
    /// Optional (off unless configured): dictionary and context, low recall.
    Person,
    /// Optional (off unless configured): number, name and street-type word.
    StreetAddress,
}

impl Builtin {
    pub const ALL: [Builtin; 14] = [
        Builtin::EmailAddress,
        Builtin::PhoneNumber,
        Builtin::CreditCard,
        Builtin::IbanCode,
        Builtin::UsSsn,
        Builtin::IpAddress,
        Builtin::AwsAccessKey,
        Builtin::ApiKey,
        Builtin::Jwt,
        Builtin::PrivateKey,
        Builtin::UrlPassword,
        Builtin::Password,
        Builtin::Person,
        Builtin::StreetAddress,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::EmailAddress => "EMAIL_ADDRESS",
            Builtin::PhoneNumber => "PHONE_NUMBER",
            Builtin::CreditCard => "CREDIT_CARD",
            Builtin::IbanCode => "IBAN_CODE",
            Builtin::UsSsn => "US_SSN",
            Builtin::IpAddress => "IP_ADDRESS",
            Builtin::AwsAccessKey => "AWS_ACCESS_KEY",
            Builtin::ApiKey => "API_KEY",
            Builtin::Jwt => "JWT",
            Builtin::PrivateKey => "PRIVATE_KEY",
            Builtin::UrlPassword => "URL_PASSWORD",
            Builtin::Password => "PASSWORD",
            Builtin::Person => "PERSON",
            Builtin::StreetAddress => "STREET_ADDRESS",
        }
    }

    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }

    /// The optional detectors, off unless the config turns them on.
    pub fn is_optional(self) -> bool {
        matches!(self, Builtin::Person | Builtin::StreetAddress)
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// A value a detector confirmed: its byte range and type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub start: usize,
    pub end: usize,
    pub kind: Builtin,
    /// Told by the words around it (a bare SSN after `SSN:`, a key after `api key`, a
    /// name after `my name is`), not by its form alone.
    pub by_context: bool,
}
