"""Word lists and unicode snippets the synthetic text is built from (pure data)."""

# One per class the migration must carry intact: accented Latin, combining marks, CJK, Hangul,
# Arabic/Hebrew (RTL), Cyrillic, Greek, emoji (ZWJ, skin tone, flag), astral (4-byte) chars,
# invisible characters and COPY-hostile text (tab, newline, CR, backslash, quotes).
UNICODE_SNIPPETS: tuple[str, ...] = (
    "café crème, naïve façade, São Paulo, Łódź",
    "e\u0301tude with combining acute, n\u0303 and Z\u0364\u0351\u0300",
    "日本語のテキストを検索する",
    "中文知识库条目",
    "한국어 문장 예시",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם, מה שלומך?",
    "Привет, мир",
    "Καλημέρα κόσμε",
    "launch 🚀 done ✅",
    "pair programming \U0001f469\u200d\U0001f4bb with 👍🏽",
    "flag 🇪🇸 and 🇯🇵",
    "astral 𝄞 clef and 𠜎 (CJK ext B)",
    "mixed RTL \u200fעברית\u200e and LTR",
    "zero\u200bwidth and BOM\ufeffinside",
    "tab\there, back\\slash, 'single' \"double\"",
    "line one\nline two\r\nline three",
    "Ångström, Søren, Zoë, Ñandú, Nguyễn Văn",
)

WORDS: tuple[str, ...] = tuple(
    """the a your my this that next every each assistant agent model prompt response token
    context window memory embedding vector similarity cosine distance search keyword ranking
    score index query database table column row schema migration backup restore snapshot
    cluster node pod deployment service volume secret kubernetes postgres redis python
    function variable error exception trace latency performance cache session queue worker
    calendar meeting reminder deadline project task email draft reply summary translation
    weather forecast temperature travel flight hotel restaurant recipe ingredient garlic
    tomato olive budget invoice payment receipt journal mood gratitude sleep exercise
    meditation focus habit goal music playlist photo camera garden plant morning evening
    weekend family friend birthday gift book chapter note idea plan step first then finally
    quickly carefully important simple secure private encrypted password account settings
    profile notification update version release feature bug fix test result data training
    inference should could would will can is are was were has have had need want try use
    build check compare explain schedule summarise translate review organise deploy migrate
    analyse estimate book cancel remember about with without before after during because
    and or but so for from into over under between""".split()
)
TOPICS: tuple[str, ...] = (
    "calendar", "email inbox", "weekly budget", "trip to Kyoto", "sourdough recipe",
    "Python script", "Kubernetes cluster", "Postgres database", "vector search", "backup plan",
    "marathon training", "Spanish lesson", "team meeting", "invoice", "journal", "playlist",
)  # fmt: skip
VERBS: tuple[str, ...] = (
    "schedule", "summarise", "translate", "debug", "plan", "optimise", "explain", "compare",
    "draft", "review", "organise", "deploy", "migrate", "back up", "restore", "estimate",
)  # fmt: skip
QUESTIONS: tuple[str, ...] = (
    "Can you {verb} my {topic} for tomorrow?",
    "How do I {verb} the {topic} without losing data?",
    "What's the best way to {verb} a {topic}?",
    "Please {verb} this {topic} and keep it short.",
    "Why does my {topic} fail when I try to {verb} it?",
)
ANSWERS: tuple[str, ...] = (
    "Sure! Here's how to {verb} your {topic}.",
    "Good question. To {verb} the {topic}, start small.",
    "I can help {verb} that {topic}. A few notes first.",
    "Done — I went ahead and tried to {verb} the {topic}.",
)
MODELS: tuple[str, ...] = ("gpt-4o", "gpt-4o-mini", "gpt-4-turbo", "claude-3-5-sonnet", "o1-mini")
NAMES: tuple[tuple[str, str], ...] = (
    ("Ana García", "ana.garcia"), ("José Álvarez", "jose.alvarez"), ("田中 太郎", "tanaka.taro"),
    ("محمد علي", "mohammed.ali"), ("דוד כהן", "david.cohen"), ("Björn Ångström", "bjorn.a"),
    ("Nguyễn Văn An", "nguyen.an"), ("Олег Петров", "oleg.petrov"), ("김민준", "minjun.kim"),
    ("Chloé O'Brien", "chloe.obrien"), ("Ελένη Παπαδοπούλου", "eleni.p"), ("Priya Patel", "priya"),
    ("Łukasz Żółć", "lukasz.z"), ("Ren\u0065\u0301e Dubois", "renee.d"), ("Ñandú 𝄞", "nandu"),
    ("\U0001f469\u200d\U0001f4bb Dev", "dev"), ("Zoë Smith", "zoe.smith"), ("王小明", "wang.xm"),
)  # fmt: skip
TAGS: tuple[str, ...] = (
    "python", "ai", "postgres", "recipe", "travel", "health", "finance", "work", "日本語",
    "café", "🚀launch", "עברית", "العربية", "to-do", "ideas", "long tag with spaces",
)  # fmt: skip
CATEGORIES: tuple[str, ...] = ("note", "howto", "reference", "personal", "work", "recipe")
MOODS: tuple[str, ...] = ("happy", "calm", "anxious", "tired", "grateful", "😊 great", "😔 low")
TOOLS: tuple[str, ...] = (
    "web_search", "calendar_create_event", "calendar_list_events", "gmail_search",
    "gmail_send", "weather_lookup", "code_interpreter", "image_generate", "translate_text",
    "knowledge_search", "journal_write", "reminder_set", "traducir_texto_🌐", "天気予報",
)  # fmt: skip
EVENTS: tuple[str, ...] = (
    "user.login", "user.logout", "user.password_reset", "conversation.create",
    "knowledge.update", "tool.invoke", "admin.role_change", "export.requested",
)  # fmt: skip
