//! The optional PERSON and STREET_ADDRESS detectors (off unless configured): person
//! names from a dictionary of common first names, titles (`Dr.`, `Mrs`) and context
//! (`Name:`, `Dear`, `my name is`), the column of a CSV table whose header names it,
//! and the e-mail address beside a name that spells it (`Ann Lee <ann.lee@...>`);
//! street addresses as a number, capitalised words and
//! a street-type word (USPS suffixes and their European counterparts). Heuristic: their
//! recall is measured and reported in docs/masking.md, not promised.

use regex::Regex;

use super::bounds;
use super::kinds::{Builtin, Found};

/// Common given names (English-speaking countries and Western Europe, India); a name
/// not listed is found only through a title or a context word.
const FIRST_NAMES: &str = "Aaron Abigail Adam Adrian Aisha Alan Albert Alejandro Alex Alexander Alexandra Alexis Alice Alicia Alison Allison Alyssa Amanda Amber Amy Ana Andrea Andrew Angela Angelica Ann Anna Anne Anthony Antonio Arjun Arthur Ashley Austin Barbara Benjamin Beth Bethany Betty Beverly Bill Billy Bob Bobby Brandon Brenda Brett Brian Brittany Brooke Bruce Bryan Caleb Cameron Carl Carla Carlos Carmen Carol Caroline Carolyn Casey Catherine Chad Charles Charlotte Chelsea Cheryl Chloe Chris Christian Christina Christine Christopher Cindy Claire Clara Claudia Cody Colin Connor Courtney Craig Crystal Curtis Cynthia Dale Dan Dana Daniel Danielle Daniela David Dawn Dean Deborah Debra Denise Dennis Derek Diana Diane Dominic Donald Donna Doris Dorothy Douglas Dylan Edward Elena Elizabeth Ella Ellen Emily Emma Eric Erica Erik Erin Ethan Eugene Eva Evelyn Frances Francesca Francis Frank Gabriel Gabriela Gabriella Gary George Gerald Giovanni Giulia Glenn Grace Greg Gregory Hannah Harold Harry Heather Helen Henry Holly Howard Ian Isaac Isabel Isabella Jack Jackson Jacob Jacqueline Jake James Jamie Jane Janet Janice Jasmine Jason Javier Jean Jeff Jeffrey Jennifer Jeremy Jerry Jesse Jessica Jesus Jill Jim Joan Joanna Joe Joel John Johnny Jonathan Jordan Jorge Jose Joseph Joshua Joyce Juan Judith Judy Julia Julian Julie Justin Karen Karl Kate Katherine Kathleen Kathryn Kathy Katie Kayla Keith Kelly Kenneth Kevin Kim Kimberly Kristen Kristin Kyle Larry Laura Lauren Lawrence Leah Lee Leo Leonardo Linda Lisa Logan Lorenzo Lori Louis Luca Lucas Lucy Luis Luke Lynn Madison Manuel Marc Marco Margaret Maria Marie Marilyn Mario Mark Martha Martin Mary Mason Matteo Matthew Maria Megan Melanie Melissa Mia Michael Michelle Miguel Mike Mohammed Monica Nancy Natalie Nathan Nicholas Nicole Noah Olivia Oliver Omar Pablo Pamela Patricia Patrick Paul Paula Peter Philip Phillip Priya Rachel Rahul Ralph Randy Raymond Rebecca Regina Richard Ricky Rita Robert Roberto Robin Rodney Roger Ronald Rose Ross Roy Russell Ruth Ryan Samantha Samuel Sandra Sara Sarah Scott Sean Sebastian Sergio Shannon Sharon Shawn Shirley Sofia Sophia Sophie Stacy Stephanie Stephen Steve Steven Susan Sylvia Tammy Tanya Teresa Terry Theresa Thomas Tiffany Timothy Tina Todd Tom Tony Tracy Travis Tyler Valerie Vanessa Victor Victoria Vincent Virginia Walter Wayne Wendy William Willie Yvonne Zachary Anders Astrid Birgit Björn Camille Céline Chiara Elin Emil Erik Fabian Felix Florian Francesco Frederik Giorgio Hans Ingrid Isabelle Jan Jens Johan Jonas Julien Klaus Lars Lea Lena Linnea Lukas Magnus Marta Mateusz Mathilde Maximilian Nils Olga Oskar Pierre Piotr Rafael Sven Thibault Tobias Ulrike Wojciech Anil Ananya Deepak Kavya Neha Pooja Rohan Sanjay Vikram";

/// More given names, taken only before a capitalised surname (`April Phillips`, not
/// `April` alone): the US Census Bureau's most frequent of 1990, less the list's above
/// and those that are also words, places or brands (`scripts/given-names` writes it).
const CENSUS_GIVEN_NAMES: &str = include_str!("census_given_names.txt");

/// Capitalised words that start sentences or name things other than people.
const NOT_SURNAMES: &str = "The This That These Those There Then Thanks Thank Please Hi Hello Dear Yes No Not And But Or If When What Where Which Who Why How I I'm It Its We You Your Our My Mr Mrs Ms Dr Street Road Avenue Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August September October November December Inc Ltd LLC Group Company Corp Bank Team Support Customer Agent Subject From To Cc Re Fwd Sent Regards Best Sincerely Account Card Phone Email Address Order Ticket Case Invoice Bugs List Lists Admin Help Info Sales Security Project Maintainers Developers Users Mailing";

const TITLES: &str = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Herr|Frau|Mme|Mlle|Sr|Sra|Dott)\.?";

/// Street-type words: USPS Publication 28 suffixes and the European words for a street.
const STREET_SUFFIXES: &str = "Alley|Annex|Arcade|Avenue|Ave|Bayou|Beach|Bend|Bluff|Bluffs|Bottom|Boulevard|Blvd|Branch|Bridge|Brook|Brooks|Burg|Burgs|Bypass|Camp|Canyon|Cape|Causeway|Center|Centers|Centre|Circle|Circles|Cir|Circus|Cliff|Cliffs|Close|Club|Common|Commons|Corner|Corners|Course|Court|Courts|Ct|Cove|Coves|Creek|Crescent|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Drive|Drives|Dr|Estate|Estates|Expressway|Extension|Extensions|Fall|Falls|Ferry|Field|Fields|Flat|Flats|Ford|Fords|Forest|Forge|Forges|Fork|Forks|Fort|Freeway|Garden|Gardens|Gateway|Glen|Glens|Green|Greens|Grove|Groves|Harbor|Harbors|Haven|Heights|Highway|Hwy|Hill|Hills|Hollow|Inlet|Island|Islands|Isle|Junction|Junctions|Key|Keys|Knoll|Knolls|Lake|Lakes|Land|Landing|Lane|Ln|Light|Lights|Loaf|Lock|Locks|Lodge|Loop|Mall|Manor|Manors|Meadow|Meadows|Mews|Mill|Mills|Mission|Motorway|Mount|Mountain|Mountains|Neck|Orchard|Oval|Overpass|Parade|Park|Parks|Parkway|Parkways|Pkwy|Pass|Passage|Path|Pike|Pine|Pines|Place|Pl|Plain|Plains|Plaza|Point|Points|Port|Ports|Prairie|Radial|Ramp|Ranch|Rapid|Rapids|Rest|Ridge|Ridges|River|Road|Roads|Rd|Route|Row|Rue|Run|Shoal|Shoals|Shore|Shores|Skyway|Spring|Springs|Spur|Spurs|Square|Squares|Sq|Station|Stravenue|Stream|Street|Streets|St|Summit|Terrace|Throughway|Trace|Track|Trafficway|Trail|Trailer|Tunnel|Turnpike|Underpass|Union|Unions|Valley|Valleys|Via|Viaduct|View|Views|Village|Villages|Ville|Vista|Walk|Walks|Wall|Way|Ways|Well|Wells|Wharf|Brae|Centreway|Chase|Gate|Grange|Hey|Mead|Rise|Wynd";

/// Header fields of a CSV column that holds people's names (compared lower-cased, with
/// blanks and `-` read as `_`).
const PERSON_NAME_COLUMNS: &[&str] = &[
    "full_name",
    "fullname",
    "first_name",
    "firstname",
    "given_name",
    "last_name",
    "lastname",
    "surname",
    "family_name",
    "customer_name",
    "contact_name",
    "employee_name",
    "patient_name",
    "account_holder",
    "cardholder",
    "card_holder",
];

/// Header fields of a column that holds people's names only in a table about people
/// (one with a [`PERSONAL_COLUMNS`] field too): `name,price` lists products,
/// `name,email` people.
const AMBIGUOUS_NAME_COLUMNS: &[&str] = &[
    "name",
    "customer",
    "contact",
    "employee",
    "patient",
    "beneficiary",
    "recipient",
    "applicant",
];

/// Header fields that make a table one about people.
const PERSONAL_COLUMNS: &[&str] = &[
    "email",
    "e_mail",
    "mail",
    "email_address",
    "phone",
    "phone_number",
    "telephone",
    "tel",
    "mobile",
    "cell",
    "address",
    "street",
    "dob",
    "date_of_birth",
    "birth_date",
    "birthday",
    "ssn",
    "iban",
    "card",
    "card_number",
    "age",
    "gender",
];

/// How far from an e-mail address a name it spells is looked for, each way.
const NEAR_ADDRESS: usize = 120;

/// The compiled name and address patterns.
pub struct NameDetectors {
    titled: Regex,
    /// Two or three capitalised words, a middle initial allowed.
    name_run: Regex,
    context: Regex,
    first_name: Regex,
    census_name: Regex,
    street_us: Regex,
    street_eu: Regex,
    not_surnames: Vec<&'static str>,
}

impl std::fmt::Debug for NameDetectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameDetectors").finish_non_exhaustive()
    }
}

impl Default for NameDetectors {
    fn default() -> Self {
        NameDetectors::new()
    }
}

/// A capitalised name word (`O'Neil`, `Jean-Luc`, `Müller`).
const NAME_WORD: &str = r"\p{Lu}[\p{Ll}\p{Lu}'’-]*\p{Ll}[\p{Ll}'’-]*";

impl NameDetectors {
    pub fn new() -> NameDetectors {
        let names = FIRST_NAMES.split(' ').collect::<Vec<_>>().join("|");
        let census_names = CENSUS_GIVEN_NAMES.lines().collect::<Vec<_>>().join("|");
        let surnames = |least: u8| {
            format!(
                r"(?:\s+\p{{Lu}}\.)?(?:\s+(?:van der |van |de |da |di |von |van den )?{NAME_WORD}){{{least},2}}"
            )
        };
        let surname = surnames(0);
        let compile = |pattern: String| Regex::new(&pattern).expect("the name patterns compile");
        NameDetectors {
            titled: compile(format!(
                r"\b{TITLES}\s+({NAME_WORD}(?:\s+\p{{Lu}}\.)?(?:\s+{NAME_WORD})?)"
            )),
            name_run: compile(format!(
                r"\b{NAME_WORD}(?:\s+\p{{Lu}}\.)?(?:[ \t]+{NAME_WORD}){{1,2}}\b"
            )),
            context: compile(format!(
                r"(?:\b[Nn]ame\s*(?:is|:)|\bDear|\bHi|\bHello|\bFrom:|\bTo:|\bCc:|\b[Cc]ontact|\bnamed|\bcalled|\bI'm|\bI am|\bThis is|\b[Pp]aged on-call engineer|\b[Ss]igned|\b[Rr]egards,|\b[Ss]incerely,|\b[Tt]hanks,)\s+({NAME_WORD}{surname})"
            )),
            first_name: compile(format!(r"\b(?:{names})\b{surname}")),
            // ASCII word boundaries (the names are ASCII): Unicode's keep a regex off its
            // DFA on non-ASCII text, and this alternation is the largest.
            census_name: compile(format!(
                r"(?-u:\b)(?:{census_names})(?-u:\b){}",
                surnames(1)
            )),
            street_us: compile(format!(
                r"\b[0-9]{{1,6}}[A-Za-z]?\s+(?:{NAME_WORD}\s+){{1,3}}(?:{STREET_SUFFIXES})\b\.?(?:,?\s+(?:Apt\.|Suite|Unit|Ste\.?|Flat)\s*[0-9A-Za-z-]+)?"
            )),
            street_eu: compile(format!(
                r"\b(?:(?:{NAME_WORD}-)*\p{{Lu}}[\p{{Ll}}äöüß]*(?:straße|strasse|str\.|weg|allee|platz|ring|gasse|damm|ufer|straat|laan|plein|gracht|dreef|singel|hof|kade|steeg|pad)\s+[0-9]+[a-z]?(?:-[0-9]+)?|(?:[0-9]+,?\s+)?(?:rue|avenue|boulevard|chemin|place|allée|impasse|quai|route)\s+(?:de la |de l'|des |du |de |d')?{NAME_WORD}(?:\s+{NAME_WORD})*|(?:Via|Viale|Piazza|Corso|Largo|Vicolo|Borgo|Incrocio|Strada|Contrada|Calle|Avenida|Plaza|Paseo|Rambla|Pasaje|Glorieta|Camino|Ronda|Travesía|Urbanización|Cuesta|Carrer|Rua)\s+(?:de la |del |de |di |della )?{NAME_WORD}(?:\s+{NAME_WORD})*,?\s+[0-9]+)"
            )),
            not_surnames: NOT_SURNAMES.split(' ').collect(),
        }
    }

    /// Appends PERSON (when `people`) and STREET_ADDRESS (when `streets`) values, in no
    /// particular order; they may overlap each other and other values.
    pub fn find(&self, text: &str, people: bool, streets: bool, out: &mut Vec<Found>) {
        if people {
            for caps in self.titled.captures_iter(text) {
                if let Some(name) = caps.get(1) {
                    self.push_person(text, name.start(), name.end(), out);
                }
            }
            for caps in self.context.captures_iter(text) {
                if let Some(name) = caps.get(1) {
                    self.push_person(text, name.start(), name.end(), out);
                }
            }
            for m in self.first_name.find_iter(text) {
                self.push_person(text, m.start(), m.end(), out);
            }
            for m in self.census_name.find_iter(text) {
                let before = out.len();
                self.push_person(text, m.start(), m.end(), out);
                // A surname cut as no name (`April Thanks`) leaves a word alone: not one.
                if out.len() > before
                    && !text[out[before].start..out[before].end].contains(char::is_whitespace)
                {
                    out.truncate(before);
                }
            }
            if text.contains(['\n']) {
                self.csv_name_columns(text, out);
            }
            for at in memchr::memchr_iter(b'@', text.as_bytes()) {
                self.names_spelled_by_address(text, at, out);
            }
        }
        if streets {
            for regex in [&self.street_us, &self.street_eu] {
                for m in regex.find_iter(text) {
                    out.push(Found {
                        start: m.start(),
                        end: m.end(),
                        kind: Builtin::StreetAddress,
                        by_context: true,
                    });
                }
            }
        }
    }

    /// The values of a CSV table's name columns: a header line (`name,email,phone`,
    /// split on `,`, `;` or a tab) with a field of [`PERSON_NAME_COLUMNS`], or of
    /// [`AMBIGUOUS_NAME_COLUMNS`] beside one of [`PERSONAL_COLUMNS`], then each line
    /// with at least as many fields, to a blank line or the end; a value is taken
    /// when it is one to four capitalised words (`Ann Lee`, `Megha V. Misra`).
    fn csv_name_columns(&self, text: &str, out: &mut Vec<Found>) {
        let mut columns: Option<(u8, usize, Vec<usize>)> = None;
        let mut line_start = 0;
        for line in text.split_inclusive('\n') {
            let start = line_start;
            line_start += line.len();
            let line = line.trim_end_matches(['\n', '\r']);
            if line.trim().is_empty() {
                columns = None;
                continue;
            }
            if let Some((delimiter, count, names)) = &columns {
                let fields = csv_fields(line, *delimiter);
                if fields.len() >= *count {
                    for &column in names {
                        let (from, to) = fields[column];
                        self.push_listed_name(text, start + from, start + to, out);
                    }
                    continue;
                }
            }
            columns = [b',', b';', b'\t'].into_iter().find_map(|delimiter| {
                let fields = csv_fields(line, delimiter);
                let field = |at: usize| &line[fields[at].0..fields[at].1];
                let personal = (0..fields.len()).any(|at| is_column(field(at), PERSONAL_COLUMNS));
                let names: Vec<usize> = (0..fields.len())
                    .filter(|&at| {
                        is_column(field(at), PERSON_NAME_COLUMNS)
                            || (personal && is_column(field(at), AMBIGUOUS_NAME_COLUMNS))
                    })
                    .collect();
                (fields.len() >= 2 && !names.is_empty()).then_some((delimiter, fields.len(), names))
            });
        }
    }

    /// A CSV field taken as a name: its quotes and blanks off, one to four capitalised
    /// words or initials, not a word that names no person.
    fn push_listed_name(&self, text: &str, from: usize, to: usize, out: &mut Vec<Found>) {
        let field = &text[from..to];
        // The field from its value's first byte, then the value: one trimming, so the
        // value's offset is the bytes trimmed off the front.
        let lead = field.trim_start().trim_start_matches('"').trim_start();
        let value = lead.trim_end().trim_end_matches('"').trim_end();
        if value.is_empty() {
            return;
        }
        let words: Vec<&str> = value.split_whitespace().collect();
        let name_like = (1..=4).contains(&words.len())
            && words
                .iter()
                .any(|w| w.chars().filter(|c| c.is_alphabetic()).count() >= 2)
            && words.iter().all(|word| {
                let mut chars = word.chars();
                chars.next().is_some_and(char::is_uppercase)
                    && chars.all(|c| c.is_alphabetic() || matches!(c, '\'' | '’' | '-' | '.'))
                    && !self.not_surnames.contains(word)
            });
        if !name_like {
            return;
        }
        let start = from + field.len() - lead.len();
        out.push(Found {
            start,
            end: start + value.len(),
            kind: Builtin::Person,
            by_context: true,
        });
    }

    /// A name beside the e-mail address whose `@` is at `at`, when the address's local
    /// part spells it: the surname and the given name, or the given name's initial
    /// right before the surname (`Ann Lee` and `ann.lee@`, `lee.ann@`, `alee@`). The
    /// address itself is the EMAIL_ADDRESS detector's.
    fn names_spelled_by_address(&self, text: &str, at: usize, out: &mut Vec<Found>) {
        let bytes = text.as_bytes();
        let mut local_start = at;
        while local_start > 0
            && (bytes[local_start - 1].is_ascii_alphanumeric()
                || matches!(bytes[local_start - 1], b'.' | b'_' | b'-' | b'+'))
        {
            local_start -= 1;
        }
        let letters: String = text[local_start..at]
            .chars()
            .filter(char::is_ascii_alphabetic)
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if letters.len() < 4 {
            return;
        }
        let mut domain_end = at + 1;
        while domain_end < bytes.len()
            && (bytes[domain_end].is_ascii_alphanumeric()
                || matches!(bytes[domain_end], b'.' | b'-'))
        {
            domain_end += 1;
        }
        let before = text.floor_char_boundary(local_start.saturating_sub(NEAR_ADDRESS));
        let after = text.floor_char_boundary(domain_end + NEAR_ADDRESS);
        for (from, to) in [(before, local_start), (domain_end, after)] {
            for m in self.name_run.find_iter(&text[from..to]) {
                // A possessive is not part of the name (`Ann Lee's`).
                let run = m.as_str();
                let run = run
                    .strip_suffix("'s")
                    .or_else(|| run.strip_suffix("’s"))
                    .unwrap_or(run);
                let start = from + m.start();
                // The window may start inside a word (`...Donald` of `McDonald`).
                let inside_a_word = bounds::before(text, start).is_some_and(char::is_alphanumeric);
                if !inside_a_word && spells(&letters, run) && !self.has_no_name_word(run) {
                    self.push_person(text, start, start + run.len(), out);
                }
            }
        }
    }

    /// Whether any word of `run` is one that names no person (`Sales Team`).
    fn has_no_name_word(&self, run: &str) -> bool {
        run.split_whitespace()
            .any(|word| self.not_surnames.contains(&word))
    }

    /// A name without the trailing words that are not names (`Thanks`, `Street`).
    fn push_person(&self, text: &str, start: usize, end: usize, out: &mut Vec<Found>) {
        let mut end = end;
        loop {
            let value = &text[start..end];
            let Some(cut) = value.rfind(char::is_whitespace) else {
                break;
            };
            let last = value[cut..].trim();
            if self.not_surnames.contains(&last) {
                end = start + value[..cut].trim_end().len();
            } else {
                break;
            }
        }
        let value = &text[start..end];
        if self.not_surnames.contains(&value)
            || bounds::after(text, end).is_some_and(|c| c.is_alphanumeric())
        {
            return;
        }
        out.push(Found {
            start,
            end,
            kind: Builtin::Person,
            by_context: true,
        });
    }
}

/// Whether a header field is one of `columns`.
fn is_column(field: &str, columns: &[&str]) -> bool {
    let field = field.trim().trim_matches('"').trim();
    field.len() <= 16
        && columns.iter().any(|name| {
            name.len() == field.len()
                && name.bytes().zip(field.bytes()).all(|(n, f)| {
                    n == f.to_ascii_lowercase() || (n == b'_' && matches!(f, b' ' | b'-'))
                })
        })
}

/// The byte ranges of a CSV line's fields, split on `delimiter` outside double quotes.
fn csv_fields(line: &str, delimiter: u8) -> Vec<(usize, usize)> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (at, &byte) in line.as_bytes().iter().enumerate() {
        if byte == b'"' {
            quoted = !quoted;
        } else if byte == delimiter && !quoted {
            fields.push((start, at));
            start = at + 1;
        }
    }
    fields.push((start, line.len()));
    fields
}

/// Whether the letters of an address's local part (`letters`, ASCII, lower case) spell
/// the name `run`: its last word (the surname, three letters or more) with its first
/// word (the given name, two or more), or with the given name's initial right before
/// the surname. Letters that are not ASCII are not compared (`Prażmo` is spelled by no
/// address here).
fn spells(letters: &str, run: &str) -> bool {
    let words: Vec<String> = run
        .split_whitespace()
        .filter(|word| !(word.len() == 2 && word.ends_with('.')))
        .map(|word| {
            word.chars()
                .filter(|c| c.is_alphabetic())
                .map(|c| c.to_ascii_lowercase())
                .collect()
        })
        .collect();
    let (Some(given), Some(surname)) = (words.first(), words.last()) else {
        return false;
    };
    if words.len() < 2 || !given.is_ascii() || !surname.is_ascii() {
        return false;
    }
    if given.len() < 2 || surname.len() < 3 || !letters.contains(surname.as_str()) {
        return false;
    }
    letters.contains(given.as_str()) || letters.contains(&format!("{}{surname}", &given[..1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(&str, &'static str)> {
        let mut out = Vec::new();
        NameDetectors::new().find(text, true, true, &mut out);
        out.sort_by_key(|f| f.start);
        out.iter()
            .map(|f| (&text[f.start..f.end], f.kind.name()))
            .collect()
    }

    #[test]
    fn names_by_dictionary_title_and_context() {
        let got = found(
            "Dear Mrs Okonkwo, Jennifer L. Warren wrote to Dr. Ebersbach. My name is Zoltan Farkas.",
        );
        let values: Vec<&str> = got.iter().map(|(v, _)| *v).collect();
        assert!(values.contains(&"Okonkwo"), "{got:?}");
        assert!(values.contains(&"Jennifer L. Warren"), "{got:?}");
        assert!(values.contains(&"Ebersbach"), "{got:?}");
        assert!(values.contains(&"Zoltan Farkas"), "{got:?}");
    }

    /// The census's given names only before a surname; words among them are not names.
    #[test]
    fn census_given_names_before_a_surname() {
        let got = found("Isaiah Williams and Terri U. Mcgrath met Troy Melton and Gloria.");
        let values: Vec<&str> = got.iter().map(|(v, _)| *v).collect();
        assert_eq!(
            values,
            ["Isaiah Williams", "Terri U. Mcgrath", "Troy Melton"],
            "{got:?}"
        );
        for text in [
            "Grant Application Form",
            "May Contain Nuts",
            "Georgia Tech",
            "Gloria Thanks",
            "Mercedes Benz",
        ] {
            assert_eq!(found(text), [], "{text}");
        }
    }

    /// A CSV table's name column, whatever the delimiter, quoted or not; other columns
    /// and a column of other words are not names.
    #[test]
    fn names_in_a_csv_name_column() {
        let text = "Rows:\nid,Full Name,email,city\n1,Krzysztof Kudlak,kk@example.pl,Lodz\n\
                    2,\"Luuk Peeters\",luuk@example.nl,Utrecht\n3,n/a,x@example.org,Oslo\n\n\
                    id;name;phone\n7;Daksh Anand;+91 98765 43210\nname,price\nAcme Widget,9.99\n";
        let values: Vec<&str> = found(text).iter().map(|(v, _)| *v).collect();
        for name in ["Krzysztof Kudlak", "Luuk Peeters", "Daksh Anand"] {
            assert!(values.contains(&name), "{name} not in {values:?}");
        }
        for other in ["Lodz", "Utrecht", "n/a", "Oslo", "Acme Widget"] {
            assert!(
                !values.iter().any(|v| v.contains(other)),
                "{other} in {values:?}"
            );
        }
    }

    /// A name the e-mail address beside it spells, either side of it; a name the
    /// address does not spell, and words that name no person, are left.
    #[test]
    fn names_spelled_by_the_address_beside_them() {
        let values = |text: &str| -> Vec<String> {
            found(text).iter().map(|(v, _)| v.to_string()).collect()
        };
        for (text, name) in [
            ("Oriana Ochoa,oriana.ochoa@example.com", "Oriana Ochoa"),
            (
                "contact Janina Miotke (jmiotke@example.org) today",
                "Janina Miotke",
            ),
            (
                "megha.misra@example.in is Megha V. Misra's",
                "Megha V. Misra",
            ),
            (
                "Giuseppe Lucciano <lucciano.giuseppe@example.it>",
                "Giuseppe Lucciano",
            ),
        ] {
            assert!(values(text).iter().any(|v| v == name), "{name} in {text}");
        }
        for text in [
            "Kieran Wilkins,heatherstewart@example.com",
            "Sales Team: sales.team@example.com",
            "Hauptbahnhof Zentrum hz@example.de",
            "Jo Li, joli@example.com",
            // The window starts 120 bytes before the address, inside `McDonald`.
            &format!(
                "Ask McDonald Trumpet{}donald.trumpet@example.com",
                " ".repeat(106)
            ),
        ] {
            assert!(values(text).is_empty(), "{text}: {:?}", values(text));
        }
    }

    #[test]
    fn street_addresses() {
        let got = found(
            "Ship to 742 Evergreen Terrace Apt. 4, or Hauptstraße 5, or 12 rue de la Paix, or Via Roma, 10.",
        );
        let values: Vec<&str> = got.iter().map(|(v, _)| *v).collect();
        assert!(values.contains(&"742 Evergreen Terrace Apt. 4"), "{got:?}");
        assert!(values.contains(&"Hauptstraße 5"), "{got:?}");
        assert!(
            values.iter().any(|v| v.contains("rue de la Paix")),
            "{got:?}"
        );
        assert!(values.contains(&"Via Roma, 10"), "{got:?}");
    }
}
