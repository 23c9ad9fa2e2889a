"""The data-protection supervisory authorities of the EU/EEA member states and the United Kingdom.

Keyed by ISO 3166-1 alpha-2 country code (Greece is GR, the United Kingdom GB). The sign and the
public page name the authority of ``transparency.country``, never one guessed from the language.
Sources: the EDPB's list of members (edpb.europa.eu/about-edpb/about-edpb/members_en) and, for the UK,
the ICO. Where a country also has regional authorities (Germany's Länder), the national one is listed: a
person may complain to it, and it forwards to the competent one.
"""

from __future__ import annotations

from typing import Dict, NamedTuple


class Authority(NamedTuple):
    name: str
    url: str


AUTHORITIES: Dict[str, Authority] = {
    "AT": Authority("Österreichische Datenschutzbehörde", "https://www.dsb.gv.at"),
    "BE": Authority("Autorité de protection des données / Gegevensbeschermingsautoriteit",
                    "https://www.autoriteprotectiondonnees.be"),
    "BG": Authority("Commission for Personal Data Protection (КЗЛД)", "https://www.cpdp.bg"),
    "HR": Authority("Agencija za zaštitu osobnih podataka (AZOP)", "https://azop.hr"),
    "CY": Authority("Commissioner for Personal Data Protection", "https://www.dataprotection.gov.cy"),
    "CZ": Authority("Úřad pro ochranu osobních údajů", "https://uoou.gov.cz"),
    "DK": Authority("Datatilsynet", "https://www.datatilsynet.dk"),
    "EE": Authority("Andmekaitse Inspektsioon", "https://www.aki.ee"),
    "FI": Authority("Tietosuojavaltuutetun toimisto", "https://tietosuoja.fi"),
    "FR": Authority("Commission nationale de l'informatique et des libertés (CNIL)", "https://www.cnil.fr"),
    "DE": Authority("Der Bundesbeauftragte für den Datenschutz und die Informationsfreiheit (BfDI)",
                    "https://www.bfdi.bund.de"),
    "GR": Authority("Hellenic Data Protection Authority", "https://www.dpa.gr"),
    "HU": Authority("Nemzeti Adatvédelmi és Információszabadság Hatóság (NAIH)", "https://naih.hu"),
    "IE": Authority("Data Protection Commission", "https://www.dataprotection.ie"),
    "IT": Authority("Garante per la protezione dei dati personali", "https://www.garanteprivacy.it"),
    "LV": Authority("Datu valsts inspekcija", "https://www.dvi.gov.lv"),
    "LT": Authority("Valstybinė duomenų apsaugos inspekcija", "https://vdai.lrv.lt"),
    "LU": Authority("Commission nationale pour la protection des données (CNPD)", "https://cnpd.public.lu"),
    "MT": Authority("Information and Data Protection Commissioner", "https://idpc.org.mt"),
    "NL": Authority("Autoriteit Persoonsgegevens", "https://www.autoriteitpersoonsgegevens.nl"),
    "PL": Authority("Urząd Ochrony Danych Osobowych (UODO)", "https://uodo.gov.pl"),
    "PT": Authority("Comissão Nacional de Proteção de Dados (CNPD)", "https://www.cnpd.pt"),
    "RO": Authority("Autoritatea Națională de Supraveghere a Prelucrării Datelor cu Caracter Personal (ANSPDCP)",
                    "https://www.dataprotection.ro"),
    "SK": Authority("Úrad na ochranu osobných údajov Slovenskej republiky", "https://dataprotection.gov.sk"),
    "SI": Authority("Informacijski pooblaščenec", "https://www.ip-rs.si"),
    "ES": Authority("Agencia Española de Protección de Datos (AEPD)", "https://www.aepd.es"),
    "SE": Authority("Integritetsskyddsmyndigheten (IMY)", "https://www.imy.se"),
    # EEA (EFTA) states
    "IS": Authority("Persónuvernd", "https://www.personuvernd.is"),
    "LI": Authority("Datenschutzstelle Liechtenstein", "https://www.datenschutzstelle.li"),
    "NO": Authority("Datatilsynet", "https://www.datatilsynet.no"),
    # United Kingdom (UK GDPR; Part 3 of the Data Protection Act 2018 for law enforcement)
    "GB": Authority("Information Commissioner's Office (ICO)", "https://ico.org.uk"),
}
