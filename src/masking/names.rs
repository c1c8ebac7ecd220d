//! The optional PERSON and STREET_ADDRESS detectors (off unless configured): person
//! names from a dictionary of common first names, titles (`Dr.`, `Mrs`) and context
//! (`Name:`, `Dear`, `my name is`); street addresses as a number, capitalised words and
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
const NOT_SURNAMES: &str = "The This That These Those There Then Thanks Thank Please Hi Hello Dear Yes No Not And But Or If When What Where Which Who Why How I I'm It Its We You Your Our My Mr Mrs Ms Dr Street Road Avenue Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August September October November December Inc Ltd LLC Group Company Corp Bank Team Support Customer Agent Subject From To Cc Re Fwd Sent Regards Best Sincerely Account Card Phone Email Address Order Ticket Case Invoice";

const TITLES: &str = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Herr|Frau|Mme|Mlle|Sr|Sra|Dott)\.?";

/// Street-type words: USPS Publication 28 suffixes and the European words for a street.
const STREET_SUFFIXES: &str = "Alley|Annex|Arcade|Avenue|Ave|Bayou|Beach|Bend|Bluff|Bluffs|Bottom|Boulevard|Blvd|Branch|Bridge|Brook|Brooks|Burg|Burgs|Bypass|Camp|Canyon|Cape|Causeway|Center|Centers|Centre|Circle|Circles|Cir|Circus|Cliff|Cliffs|Close|Club|Common|Commons|Corner|Corners|Course|Court|Courts|Ct|Cove|Coves|Creek|Crescent|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Drive|Drives|Dr|Estate|Estates|Expressway|Extension|Extensions|Fall|Falls|Ferry|Field|Fields|Flat|Flats|Ford|Fords|Forest|Forge|Forges|Fork|Forks|Fort|Freeway|Garden|Gardens|Gateway|Glen|Glens|Green|Greens|Grove|Groves|Harbor|Harbors|Haven|Heights|Highway|Hwy|Hill|Hills|Hollow|Inlet|Island|Islands|Isle|Junction|Junctions|Key|Keys|Knoll|Knolls|Lake|Lakes|Land|Landing|Lane|Ln|Light|Lights|Loaf|Lock|Locks|Lodge|Loop|Mall|Manor|Manors|Meadow|Meadows|Mews|Mill|Mills|Mission|Motorway|Mount|Mountain|Mountains|Neck|Orchard|Oval|Overpass|Parade|Park|Parks|Parkway|Parkways|Pkwy|Pass|Passage|Path|Pike|Pine|Pines|Place|Pl|Plain|Plains|Plaza|Point|Points|Port|Ports|Prairie|Radial|Ramp|Ranch|Rapid|Rapids|Rest|Ridge|Ridges|River|Road|Roads|Rd|Route|Row|Rue|Run|Shoal|Shoals|Shore|Shores|Skyway|Spring|Springs|Spur|Spurs|Square|Squares|Sq|Station|Stravenue|Stream|Street|Streets|St|Summit|Terrace|Throughway|Trace|Track|Trafficway|Trail|Trailer|Tunnel|Turnpike|Underpass|Union|Unions|Valley|Valleys|Via|Viaduct|View|Views|Village|Villages|Ville|Vista|Walk|Walks|Wall|Way|Ways|Well|Wells|Wharf|Brae|Centreway|Chase|Gate|Grange|Hey|Mead|Rise|Wynd";

/// The compiled name and address patterns.
pub struct NameDetectors {
    titled: Regex,
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
