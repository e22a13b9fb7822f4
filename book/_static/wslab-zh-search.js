// The Chinese edition only (book/conf.py). Sphinx 9.0's search data for Chinese, language_data.js,
// ends with `window.Stemmer = ChineseStemmer;` while the stemmer it ships for Chinese is the English
// one (sphinx/search/zh.py: english-stemmer.js, EnglishStemmer): every page logged "ChineseStemmer is
// not defined" and the search found nothing. This names the stemmer it expects (loaded before it).
window.ChineseStemmer = function () { return new EnglishStemmer(); };
