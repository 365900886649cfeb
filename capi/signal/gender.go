package signal

import "strings"

// NormalizeGender returns "f" or "m", the only values Meta accepts (ge), from the words people and
// shops use: m, male, man, boy, mr, sir, he, him, his, masculine; f, female, woman, girl, mrs, ms,
// miss, lady, ma'am, she, her, feminine; and the like in German, French, Spanish, Italian,
// Portuguese and Dutch. Anything else (including non-binary answers, which Meta
// cannot receive) is ErrUnknownGender. An empty input gives "".
func NormalizeGender(s string) (string, error) {
	s, err := prepare(s)
	if err != nil || s == "" {
		return "", err
	}
	return normalizeGenderPrepared(s)
}

// normalizeGenderPrepared is NormalizeGender after prepare.
func normalizeGenderPrepared(s string) (string, error) {
	if g, ok := lookupFolded(genderWords, s); ok {
		return g, nil
	}
	return "", ErrUnknownGender
}

var genderWords = func() map[string]string {
	m := map[string]string{}
	for _, w := range strings.Fields(`m male man men boy gentleman mr mister sir he him his masculine masc
		männlich maennlich mann herr junge homme masculin monsieur hombre masculino varon señor senor
		uomo maschio maschile signor signore homem senhor sr man mannelijk heer jongen`) {
		m[foldKey(w)] = "m"
	}
	for _, w := range strings.Fields(`f female woman women girl lady mrs ms miss madam maam ma'am mistress she
		her hers feminine fem weiblich frau dame mädchen maedchen femme féminin feminin madame
		mademoiselle mujer femenino femenina señora senora señorita donna femmina femminile signora
		mulher feminina senhora sra vrouw vrouwelijk mevrouw meisje`) {
		m[foldKey(w)] = "f"
	}
	return m
}()
