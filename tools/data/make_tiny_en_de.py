#!/usr/bin/env python
"""A tiny synthetic English->German parallel corpus: learnable, but not word for word.

    python tools/data/make_tiny_en_de.py data/tiny_en_de/raw

writes ``{train,valid,test}.{en,de}`` (plain detokenised text, one sentence per line), the layout
``tools/data/prepare_wmt14_en_de.py --raw-dir`` takes. A Transformer has to learn the German that
English does not mark: article and adjective agreement with the noun's gender, number and case
(der/den/dem, ein großer / einen großen), verb agreement, verb-second after a fronted adverb
("heute sieht der Hund ..."), verb-final subordinate clauses ("..., weil der Hund die Katze
sieht"), and the perfect participle and modal infinitive moved to the end of the clause. The same
seed gives the same corpus; test sentences never occur in train.
"""
import argparse
import random
from pathlib import Path

# noun: (English singular, English plural, German singular, German plural, gender); animate first
NOUNS = [
    ('dog', 'dogs', 'Hund', 'Hunde', 'm'), ('cat', 'cats', 'Katze', 'Katzen', 'f'),
    ('child', 'children', 'Kind', 'Kinder', 'n'), ('man', 'men', 'Mann', 'Männer', 'm'),
    ('woman', 'women', 'Frau', 'Frauen', 'f'), ('teacher', 'teachers', 'Lehrer', 'Lehrer', 'm'),
    ('doctor', 'doctors', 'Arzt', 'Ärzte', 'm'), ('bird', 'birds', 'Vogel', 'Vögel', 'm'),
    ('horse', 'horses', 'Pferd', 'Pferde', 'n'), ('girl', 'girls', 'Mädchen', 'Mädchen', 'n'),
    ('farmer', 'farmers', 'Bauer', 'Bauern', 'm'), ('mouse', 'mice', 'Maus', 'Mäuse', 'f'),
    ('student', 'students', 'Studentin', 'Studentinnen', 'f'), ('king', 'kings', 'König', 'Könige', 'm'),
    ('neighbour', 'neighbours', 'Nachbar', 'Nachbarn', 'm'), ('friend', 'friends', 'Freundin', 'Freundinnen', 'f'),
    ('baker', 'bakers', 'Bäcker', 'Bäcker', 'm'), ('cow', 'cows', 'Kuh', 'Kühe', 'f'),
    ('sheep', 'sheep', 'Schaf', 'Schafe', 'n'), ('guest', 'guests', 'Gast', 'Gäste', 'm'),
    ('book', 'books', 'Buch', 'Bücher', 'n'), ('car', 'cars', 'Auto', 'Autos', 'n'),
    ('apple', 'apples', 'Apfel', 'Äpfel', 'm'), ('letter', 'letters', 'Brief', 'Briefe', 'm'),
    ('house', 'houses', 'Haus', 'Häuser', 'n'), ('flower', 'flowers', 'Blume', 'Blumen', 'f'),
    ('song', 'songs', 'Lied', 'Lieder', 'n'), ('table', 'tables', 'Tisch', 'Tische', 'm'),
    ('picture', 'pictures', 'Bild', 'Bilder', 'n'), ('door', 'doors', 'Tür', 'Türen', 'f'),
    ('bag', 'bags', 'Tasche', 'Taschen', 'f'), ('chair', 'chairs', 'Stuhl', 'Stühle', 'm'),
    ('cake', 'cakes', 'Kuchen', 'Kuchen', 'm'), ('key', 'keys', 'Schlüssel', 'Schlüssel', 'm'),
    ('window', 'windows', 'Fenster', 'Fenster', 'n'), ('ball', 'balls', 'Ball', 'Bälle', 'm'),
    ('lamp', 'lamps', 'Lampe', 'Lampen', 'f'), ('boat', 'boats', 'Boot', 'Boote', 'n'),
    ('newspaper', 'newspapers', 'Zeitung', 'Zeitungen', 'f'), ('glass', 'glasses', 'Glas', 'Gläser', 'n'),
]
ANIMATE = NOUNS[:20]
ADJECTIVES = [('big', 'groß'), ('small', 'klein'), ('old', 'alt'), ('young', 'jung'),
              ('red', 'rot'), ('new', 'neu'), ('beautiful', 'schön'), ('tired', 'müde'),
              ('happy', 'glücklich'), ('strange', 'seltsam'), ('quiet', 'leise'), ('fast', 'schnell'),
              ('green', 'grün'), ('poor', 'arm'), ('rich', 'reich'), ('clever', 'klug'),
              ('heavy', 'schwer'), ('cheap', 'billig'), ('famous', 'berühmt'), ('brave', 'mutig')]
# verb: English (3sg, base, participle), German (infinitive, 3sg, participle, perfect auxiliary,
# separable prefix or ''), object cases ('acc', 'dat' or 'dat acc' for give-somebody-something)
VERBS = [
    (('sees', 'see', 'seen'), ('sehen', 'sieht', 'gesehen', 'haben', ''), 'acc'),
    (('finds', 'find', 'found'), ('finden', 'findet', 'gefunden', 'haben', ''), 'acc'),
    (('likes', 'like', 'liked'), ('mögen', 'mag', 'gemocht', 'haben', ''), 'acc'),
    (('visits', 'visit', 'visited'), ('besuchen', 'besucht', 'besucht', 'haben', ''), 'acc'),
    (('paints', 'paint', 'painted'), ('malen', 'malt', 'gemalt', 'haben', ''), 'acc'),
    (('buys', 'buy', 'bought'), ('kaufen', 'kauft', 'gekauft', 'haben', ''), 'acc'),
    (('hears', 'hear', 'heard'), ('hören', 'hört', 'gehört', 'haben', ''), 'acc'),
    (('carries', 'carry', 'carried'), ('tragen', 'trägt', 'getragen', 'haben', ''), 'acc'),
    (('meets', 'meet', 'met'), ('treffen', 'trifft', 'getroffen', 'haben', ''), 'acc'),
    (('reads', 'read', 'read'), ('lesen', 'liest', 'gelesen', 'haben', ''), 'acc'),
    (('calls', 'call', 'called'), ('anrufen', 'ruft', 'angerufen', 'haben', 'an'), 'acc'),
    (('picks up', 'pick up', 'picked up'), ('abholen', 'holt', 'abgeholt', 'haben', 'ab'), 'acc'),
    (('helps', 'help', 'helped'), ('helfen', 'hilft', 'geholfen', 'haben', ''), 'dat'),
    (('follows', 'follow', 'followed'), ('folgen', 'folgt', 'gefolgt', 'sein', ''), 'dat'),
    (('thanks', 'thank', 'thanked'), ('danken', 'dankt', 'gedankt', 'haben', ''), 'dat'),
    (('gives', 'give', 'given'), ('geben', 'gibt', 'gegeben', 'haben', ''), 'dat acc'),
    (('shows', 'show', 'shown'), ('zeigen', 'zeigt', 'gezeigt', 'haben', ''), 'dat acc'),
    (('sends', 'send', 'sent'), ('schicken', 'schickt', 'geschickt', 'haben', ''), 'dat acc'),
]
AUX = {'haben': ('hat', 'haben'), 'sein': ('ist', 'sind')}
MODALS = [('wants to', 'want to', 'will', 'wollen'), ('can', 'can', 'kann', 'können'),
          ('must', 'must', 'muss', 'müssen')]
PREPOSITIONS = [('with', 'mit', 'dat'), ('for', 'für', 'acc'), ('without', 'ohne', 'acc'),
                ('after', 'nach', 'dat')]
ADVERBS = [('today', 'heute'), ('tomorrow', 'morgen'), ('often', 'oft'), ('sometimes', 'manchmal'),
           ('in the morning', 'am Morgen'), ('in the evening', 'am Abend'), ('yesterday', 'gestern')]
CONJUNCTIONS = [('because', 'weil'), ('although', 'obwohl'), ('when', 'wenn'), ('while', 'während')]
REPORTING = [('i think that', 'ich glaube , dass'), ('she says that', 'sie sagt , dass'),
             ('we know that', 'wir wissen , dass'), ('they hope that', 'sie hoffen , dass')]
DEF = {'nom': {'m': 'der', 'f': 'die', 'n': 'das', 'pl': 'die'},
       'acc': {'m': 'den', 'f': 'die', 'n': 'das', 'pl': 'die'},
       'dat': {'m': 'dem', 'f': 'der', 'n': 'dem', 'pl': 'den'}}
INDEF = {'nom': {'m': 'ein', 'f': 'eine', 'n': 'ein'}, 'acc': {'m': 'einen', 'f': 'eine', 'n': 'ein'},
         'dat': {'m': 'einem', 'f': 'einer', 'n': 'einem'}}
WEAK = {'nom': {'m': 'e', 'f': 'e', 'n': 'e', 'pl': 'en'}, 'acc': {'m': 'en', 'f': 'e', 'n': 'e', 'pl': 'en'},
        'dat': {'m': 'en', 'f': 'en', 'n': 'en', 'pl': 'en'}}
MIXED = {'nom': {'m': 'er', 'f': 'e', 'n': 'es'}, 'acc': {'m': 'en', 'f': 'e', 'n': 'es'},
         'dat': {'m': 'en', 'f': 'en', 'n': 'en'}}


def noun_phrase(rng, case, animate=False, definite=None):
    """(English, German, plural?) for a noun phrase in ``case`` ('nom', 'acc' or 'dat')."""
    en_sg, en_pl, de_sg, de_pl, gender = rng.choice(ANIMATE if animate else NOUNS)
    plural = rng.random() < 0.3
    definite = plural or rng.random() < 0.6 if definite is None else definite
    adj = rng.choice(ADJECTIVES) if rng.random() < 0.5 else None
    key = 'pl' if plural else gender
    en = ['the' if definite else 'a']
    de = [DEF[case][key] if definite else INDEF[case][gender]]
    if adj:
        en.append(adj[0])
        ending = (WEAK if definite else MIXED)[case][key]
        de.append(adj[1] + (ending[1:] if adj[1].endswith('e') else ending))  # müde + en = müden
    en.append(en_pl if plural else en_sg)
    if plural and case == 'dat' and de_pl[-1] not in 'ns':
        de_pl += 'n'  # dative plural: den Hunden
    de.append(de_pl if plural else de_sg)
    if not definite and en[1][0] in 'aeiou':
        en[0] = 'an'
    return ' '.join(en), ' '.join(de), plural


def subject(rng):
    """A subject, sometimes with a relative clause: der Hund , der die Katze sieht ,"""
    en, de, plural = noun_phrase(rng, 'nom', animate=True, definite=True if rng.random() < 0.15 else None)
    if de.split()[0] in ('der', 'die', 'das') and rng.random() < 0.15:
        obj_en, obj_de, _ = noun_phrase(rng, 'acc')
        (en3, en_base, _), (inf, de3, _, _, prefix), _ = rng.choice([v for v in VERBS if v[2] == 'acc'])
        verb = inf if plural else prefix + de3  # verb-final: anrufen / anruft
        en += f' that {en_base if plural else en3} {obj_en}'
        de += f' , {de.split()[0]} {obj_de} {verb} ,'
    return en, de, plural


def clause(rng):
    """(English, German main clause as (subject, finite verb, middle, end), German verb-final clause)."""
    subj_en, subj_de, plural = subject(rng)
    (en3, en_base, en_part), (inf, de3, de_part, aux, prefix), cases = rng.choice(VERBS)
    negated = rng.random() < 0.15
    objects = [noun_phrase(rng, case, definite=True if negated else None) for case in cases.split()]
    obj_en = ' '.join(o[0] for o in objects)
    mid = [o[1] for o in objects] + (['nicht'] if negated else [])
    if not negated and rng.random() < 0.2:
        prep_en, prep_de, case = rng.choice(PREPOSITIONS)
        pp_en, pp_de, _ = noun_phrase(rng, case)
        obj_en += f' {prep_en} {pp_en}'
        mid.append(f'{prep_de} {pp_de}')
    kind = rng.random()
    if kind < 0.5:  # present; a separable prefix goes to the end of a main clause
        fin = inf[len(prefix):] if plural else de3
        if negated:
            en = f'{subj_en} {"do" if plural else "does"} not {en_base} {obj_en}'
        else:
            en = f'{subj_en} {en_base if plural else en3} {obj_en}'
        end, final = [prefix] if prefix else [], (prefix + fin if prefix else fin)
    elif kind < 0.75:  # perfect: participle at the end, haben or sein
        fin = AUX[aux][plural]
        en = f'{subj_en} {"have" if plural else "has"}{" not" if negated else ""} {en_part} {obj_en}'
        end, final = [de_part], f'{de_part} {fin}'
    else:  # modal + infinitive at the end
        modal_3, modal_pl, fin3, finpl = rng.choice(MODALS)
        fin = finpl if plural else fin3
        modal_en = modal_pl if plural else modal_3
        if negated:
            modal_en = {'wants to': 'does not want to', 'want to': 'do not want to'}.get(modal_en, modal_en + ' not')
        en = f'{subj_en} {modal_en} {en_base} {obj_en}'
        end, final = [inf], f'{inf} {fin}'
    return en, (subj_de, fin, mid, end), f'{subj_de} {" ".join(mid)} {final}'


def main_clause(de, adverb=None):
    subj, fin, mid, end = de
    words = [adverb, fin, subj] if adverb else [subj, fin]
    return ' '.join(words + mid + end)


def sentence(rng):
    """One (English, German) pair."""
    en, de_main, de_final = clause(rng)
    r = rng.random()
    if r < 0.25:  # fronted adverb: German verb-second
        adv_en, adv_de = rng.choice(ADVERBS)
        return f'{adv_en} {en} .', f'{main_clause(de_main, adv_de)} .'
    if r < 0.55:  # main clause + subordinate clause: German verb-final
        conj_en, conj_de = rng.choice(CONJUNCTIONS)
        en2, _, de2_final = clause(rng)
        return f'{en} {conj_en} {en2} .', f'{main_clause(de_main)} , {conj_de} {de2_final} .'
    if r < 0.7:  # reported clause
        rep_en, rep_de = rng.choice(REPORTING)
        return f'{rep_en} {en} .', f'{rep_de} {de_final} .'
    return f'{en} .', f'{main_clause(de_main)} .'


def capitalise(text):
    return text[0].upper() + text[1:]


def make_corpus(out_dir, n_train=20000, n_valid=500, n_test=500, seed=1):
    """Write the corpus under ``out_dir``; return the number of sentence pairs per split."""
    rng = random.Random(seed)
    seen, splits = set(), {}
    for split, size in (('test', n_test), ('valid', n_valid), ('train', n_train)):
        pairs = []
        while len(pairs) < size:
            en, de = sentence(rng)
            if split != 'train' and en in seen:
                continue  # test and valid hold distinct sentences
            if split == 'train' and en in splits['test'][0]:
                continue  # no test sentence in train
            seen.add(en)
            pairs.append((capitalise(en.replace(' .', '.')), capitalise(de.replace(' .', '.').replace(' ,', ','))))
        splits[split] = ({en for en, _ in pairs}, pairs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, (_, pairs) in splits.items():
        for i, lang in enumerate(('en', 'de')):
            (out / f'{split}.{lang}').write_text(''.join(p[i] + '\n' for p in pairs), encoding='utf-8')
    return {split: len(pairs) for split, (_, pairs) in splits.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir', help='where {train,valid,test}.{en,de} are written')
    parser.add_argument('--train', type=int, default=20000, help='training sentence pairs')
    parser.add_argument('--valid', type=int, default=500)
    parser.add_argument('--test', type=int, default=500)
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args(argv)
    sizes = make_corpus(args.out_dir, args.train, args.valid, args.test, args.seed)
    print(f'wrote {sizes} sentence pairs to {args.out_dir}')


if __name__ == '__main__':
    main()
